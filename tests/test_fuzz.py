"""Property-based fuzzing: the recipe schema and sparse storage under inputs nobody wrote by hand.

Whatever a recipe mapping holds, reading it either gives a recipe that survives a YAML round trip
unchanged or raises :class:`RecipeError` (never another exception); sparse storage gives back
exactly the tensors it was given, whatever their shape, dtype and sparsity; a saved model whose
records were edited loads or is refused in words.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.test_recipe import EXAMPLES, MINIMAL, STEP_EXAMPLES

from slimkit.errors import SlimkitError
from slimkit.models.sparse import compress_state, decompress_state
from slimkit.recipe import Recipe

# Anything YAML can hold: scalars of every kind (NaN, huge, negative, unicode), lists, mappings.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
STEPS = [
    *({"prune": c} for c in EXAMPLES.values() if "method" in c),
    *({"quantize": c} for c in EXAMPLES.values() if "mode" in c),
    *({kind: c} for kind, c in STEP_EXAMPLES.items()),
]


def _mutate(config: Any, data: st.DataObject) -> Any:
    """``config`` with some values replaced by arbitrary ones, some keys added or dropped."""
    if not isinstance(config, dict):
        return data.draw(VALUES) if data.draw(st.booleans()) else config
    out = {}
    for key, value in config.items():
        choice = data.draw(st.sampled_from(["keep", "mutate", "drop", "replace"]))
        if choice == "keep":
            out[key] = value
        elif choice == "mutate":
            out[key] = _mutate(value, data)
        elif choice == "replace":
            out[key] = data.draw(VALUES)
    if data.draw(st.booleans()):
        out[data.draw(st.text(max_size=8))] = data.draw(VALUES)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_recipe_mapping_parses_or_is_refused_in_words(data: st.DataObject):
    recipe: dict[str, Any] = {
        **MINIMAL,
        "baseline": {"train": {"epochs": 2, "lr": 0.01}},
        "evaluation": {"batch_size": 4, "rounds": 3},
        "steps": copy.deepcopy(data.draw(st.lists(st.sampled_from(STEPS), max_size=3))),
    }
    fuzzed = _mutate(recipe, data)
    try:
        parsed = Recipe.from_dict(fuzzed)
    except SlimkitError as err:
        assert str(err).strip()
        return
    again = Recipe.from_dict(yaml.safe_load(parsed.to_yaml()))
    assert again == parsed


@settings(max_examples=150, deadline=None)
@given(value=VALUES)
def test_a_recipe_of_arbitrary_shape_is_refused_in_words(value: Any):
    try:
        Recipe.from_dict(value)
    except SlimkitError as err:
        assert str(err).strip()


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.uint8]


@st.composite
def states(draw: st.DrawFn) -> dict[str, torch.Tensor]:
    out = {}
    for i in range(draw(st.integers(1, 4))):
        shape = draw(st.lists(st.integers(0, 7), min_size=0, max_size=4))
        dtype = draw(st.sampled_from(DTYPES))
        seed = draw(st.integers(0, 2**16))
        sparsity = draw(st.floats(0.0, 1.0))
        g = torch.Generator().manual_seed(seed)
        t = (torch.randn(shape, generator=g) * 5).to(dtype)
        t[torch.rand(shape, generator=g) < sparsity] = 0
        out[f"layer{i}.weight"] = t
    return out


@settings(max_examples=120, deadline=None)
@given(state=states())
def test_sparse_storage_round_trip_is_exact(state: dict[str, torch.Tensor]):
    stored, metadata = compress_state(state)
    restored = decompress_state(stored, metadata)
    assert set(restored) == set(state)
    for name, tensor in state.items():
        assert restored[name].dtype == tensor.dtype and restored[name].shape == tensor.shape
        assert torch.equal(restored[name], tensor)


def _saved_sparse_model(folder: Path) -> Path:
    from slimkit.models import ModelSpec, build_model
    from slimkit.models.persist import save_model

    net = build_model(ModelSpec.parse("resnet-mini"), num_classes=3, in_channels=1)
    with torch.no_grad():
        for p in net.parameters():
            p[torch.rand_like(p) < 0.7] = 0  # sparse: stored as masks + values
    return save_model(net, folder / "model.safetensors", {"source": "resnet-mini", "kwargs": {}})


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_saved_model_with_edited_records_loads_or_is_refused_in_words(
    data: st.DataObject, tmp_path: Path
):
    """Each metadata record (architecture, layer manifest, sparse shapes, torchao's layout)
    or a tensor of a real saved model replaced by anything: a SlimkitError, never another."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from slimkit.models import ModelSpec, build_model

    source = tmp_path / "source.safetensors"
    if not source.exists():
        source = _saved_sparse_model(tmp_path).rename(source)
    with safe_open(str(source), "pt") as f:
        metadata = dict(f.metadata())
    tensors = load_file(str(source))
    key = data.draw(st.sampled_from([*metadata, "tensor_names"]))
    raw = data.draw(st.booleans())
    metadata[key] = data.draw(st.text(max_size=30)) if raw else json.dumps(data.draw(VALUES))
    if data.draw(st.booleans()):
        name = data.draw(st.sampled_from(sorted(tensors)))
        tensors[name] = data.draw(
            st.sampled_from([torch.zeros(3), torch.zeros(0, dtype=torch.uint8), torch.ones(2, 2)])
        )
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, str(edited), metadata=metadata)
    with contextlib.suppress(SlimkitError):
        build_model(ModelSpec.parse(str(edited)))
