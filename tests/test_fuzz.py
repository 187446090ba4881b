"""Property-based fuzzing: the recipe schema and sparse storage under inputs nobody wrote by hand.

Whatever a recipe mapping holds, reading it either gives a recipe that survives a YAML round trip
unchanged or raises :class:`RecipeError` (never another exception); sparse storage gives back
exactly the tensors it was given, whatever their shape, dtype and sparsity.
"""

from __future__ import annotations

import copy
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
