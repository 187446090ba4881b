"""Every transformer family slimkit knows, through every structural technique: tiny random
models built in the test from each family's own config (tests/fixtures/tiny_models.py), as
timm tests its registry. What must hold: heads and FFN pruning remove exactly their share and
nothing else, MACs fall with them, pruned and cut models reload bit for bit, and a family whose
layers cannot be dropped says so."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import pytest
import torch
from tests.helpers import family_bundle, tiny_models
from torch import nn

from slimkit.distillation.configs import KeepEveryStudent
from slimkit.distillation.students import build_student
from slimkit.errors import StepError
from slimkit.evaluation import count_macs
from slimkit.export.onnx import export_onnx
from slimkit.models import ModelSpec, build_model, save_model
from slimkit.models.arch import Arch
from slimkit.models.families import FAMILIES, find_family
from slimkit.models.surgery import weight_rows
from slimkit.pruning import FfnConfig, HeadsConfig, VocabConfig, prune
from slimkit.sessions import session

FAMILY_NAMES = tiny_models().HF_FAMILIES
TEXT = [f for f in FAMILY_NAMES if f != "vit"]
# The families whose graphs differ. transformers generates CamemBERT's and XLM-RoBERTa's
# modeling files from RoBERTa's: exported or quantized, they are RoBERTa's graph again. The
# structural tests keep them (their configs and module paths are what find_family reads); the
# tests that trace and quantize a graph run each distinct graph once.
GRAPHS = [f for f in FAMILY_NAMES if f not in ("camembert", "xlm-roberta")]


def _net(family: str) -> nn.Module:
    return tiny_models().tiny_hf(family)


def _inputs(family: str, length: int = 10) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    if family == "vit":
        return (torch.randn(2, 3, 16, 16, generator=g),)
    ids = torch.randint(2, 60, (2, length), generator=g)
    return ids, torch.ones_like(ids)


def _widths(model: nn.Module) -> list[tuple[int, int]]:
    """Per layer: the attention width (inputs of the output projection) and the FFN width."""
    found = find_family(model)
    assert found is not None
    attention, ffn = found.family.attention, found.family.ffn
    return [
        (
            weight_rows(layer.get_submodule(attention.out)).shape[1],
            weight_rows(layer.get_submodule(ffn.down)).shape[1],
        )
        for layer in found.layers()
    ]


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_family_of_the_matrix_is_registered_and_found():
    for family in FAMILY_NAMES:
        assert family in FAMILIES
        found = find_family(_net(family))
        assert found is not None and found.family is FAMILIES.get(family)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_heads_and_ffn_pruning_remove_half_of_every_layer_and_nothing_else(family: str):
    net = _net(family)
    inputs = _inputs(family)
    hf = net.model  # the wrapper adds nothing to transformers' own model
    names = ("pixel_values",) if family == "vit" else ("input_ids", "attention_mask")
    expected = hf(**dict(zip(names, inputs, strict=True)))
    torch.testing.assert_close(net(*inputs), expected.logits, rtol=0, atol=0)

    pruned = prune(prune(net, HeadsConfig(ratio=0.5)), FfnConfig(ratio=0.5))
    assert _widths(pruned) == [(a // 2, f // 2) for a, f in _widths(net)]
    assert pruned(*inputs).shape == (2, 3)
    # Only the attention and FFN projections shrank: the parameters that went are theirs.
    found = find_family(net)
    assert found is not None
    attention, ffn = found.family.attention, found.family.ffn
    projections = [attention.out, *ffn.up, ffn.down] + [
        f"{attention.module}.{p}"
        for p in (attention.q, attention.k, attention.v, attention.fused, *attention.per_head)
        if p
    ]

    def projection_params(model: nn.Module) -> int:
        total = 0
        for layer in find_family(model).layers():  # type: ignore[union-attr]
            for path in projections:
                with contextlib.suppress(AttributeError):  # one this configuration lacks
                    total += _params(layer.get_submodule(path))
        return total

    assert _params(net) - _params(pruned) == projection_params(net) - projection_params(pruned)
    # Half the projections' work and half of attention's: MACs fall by more than a third.
    assert count_macs(pruned, inputs) < 0.65 * count_macs(net, inputs)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_pruned_model_of_every_family_reloads_bit_for_bit(
    family: str, tmp_path: Path, fixtures_on_path: Path
):
    pruned = prune(prune(_net(family), HeadsConfig(ratio=0.5)), FfnConfig(ratio=0.25))
    arch = Arch(source="tiny_models:tiny_hf", kwargs={"family": family})
    path = save_model(pruned, tmp_path / "pruned.safetensors", arch)
    again = build_model(ModelSpec.parse(str(path)))
    inputs = _inputs(family)
    torch.testing.assert_close(again(*inputs), pruned(*inputs), rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_layer_drop_students_keep_every_other_layer_except_where_layers_are_shared(
    family: str, tmp_path: Path, fixtures_on_path: Path
):
    net = _net(family)
    arch = Arch(source="tiny_models:tiny_hf", kwargs={"family": family})
    if FAMILIES.get(family).shared:
        with pytest.raises(StepError, match="every depth reuses the same layer weights"):
            build_student(net, KeepEveryStudent(keep_every=2), arch, {})
        return
    student, student_arch = build_student(net, KeepEveryStudent(keep_every=2), arch, {})
    assert len(find_family(student).layers()) == 1  # type: ignore[union-attr]
    inputs = _inputs(family)
    path = save_model(student, tmp_path / "student.safetensors", student_arch)
    again = build_model(ModelSpec.parse(str(path)))
    torch.testing.assert_close(again(*inputs), student(*inputs), rtol=0, atol=0)


@pytest.mark.parametrize("family", TEXT)
def test_vocabulary_trimming_keeps_the_tokens_the_data_uses_in_every_text_family(family: str):
    net = _net(family)
    ids = torch.randint(2, 20, (8, 10), generator=torch.Generator().manual_seed(1))
    batches = [((ids, torch.ones_like(ids)), torch.zeros(8, dtype=torch.long))]
    trimmed = prune(net, VocabConfig(unk_token=1), batches=batches)
    kept = _params(net) - _params(trimmed)
    width = next(p for n, p in net.named_parameters() if "emb" in n or "wte" in n).shape[1]
    assert kept >= (64 - 20) * width  # at least the 44 unused rows are gone
    torch.testing.assert_close(trimmed(ids, torch.ones_like(ids)), net(ids, torch.ones_like(ids)))


@pytest.mark.slow
@pytest.mark.parametrize("family", GRAPHS)
def test_a_pruned_model_of_every_family_exports_to_onnx_and_runs_at_two_lengths(
    family: str, tmp_path: Path
):
    pruned = prune(prune(_net(family), HeadsConfig(ratio=0.5)), FfnConfig(ratio=0.5))
    inputs = _inputs(family)
    names = ("pixel_values",) if family == "vit" else ("input_ids", "attention_mask")
    path = export_onnx(pruned, inputs, names, tmp_path / "m.onnx")
    sess = session(path, threads=1)
    for length in (10,) if family == "vit" else (10, 6):
        given = _inputs(family, length)
        got = sess.run(None, {n: x.numpy() for n, x in zip(names, given, strict=True)})[0]
        torch.testing.assert_close(torch.from_numpy(got), pruned(*given), rtol=1e-4, atol=1e-4)


def test_a_classifier_that_resizes_its_images_is_not_exported_as_a_transformers_directory(
    tmp_path: Path, fixtures_on_path: Path
):
    from slimkit.errors import ExportError
    from slimkit.export import export_hf
    from slimkit.models.resolution import resize_inputs

    net = _net("vit")
    resize_inputs(net, (8, 8))
    with pytest.raises(ExportError, match=r"resizes its images.*--format onnx"):
        export_hf(net, tmp_path / "hf", _inputs("vit"))
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_export_hf_writes_what_transformers_loads_to_the_same_logits(
    family: str, tmp_path: Path, fixtures_on_path: Path
):
    """Layer-drop students and uniform FFN pruning are what every family's config can say;
    fewer heads only where the config records a head's width (Llama, Mistral)."""
    import transformers

    from slimkit.errors import ExportError
    from slimkit.export import export_hf

    net = prune(_net(family), FfnConfig(ratio=0.5))
    if not FAMILIES.get(family).shared:
        arch = Arch(source="tiny_models:tiny_hf", kwargs={"family": family})
        net, _ = build_student(net, KeepEveryStudent(keep_every=2), arch, {})
    inputs = _inputs(family)
    out = export_hf(net, tmp_path / "hf", inputs)
    auto = (
        transformers.AutoModelForImageClassification
        if family == "vit"
        else transformers.AutoModelForSequenceClassification
    )
    loaded = auto.from_pretrained(out).eval()
    names = ("pixel_values",) if family == "vit" else ("input_ids", "attention_mask")
    logits = loaded(**dict(zip(names, inputs, strict=True))).logits
    torch.testing.assert_close(logits, net(*inputs), rtol=1e-5, atol=1e-5)
    headless = prune(net, HeadsConfig(ratio=0.5))
    if FAMILIES.get(family).head_config is None:
        with pytest.raises(ExportError, match="derive a head's width from hidden size / heads"):
            export_hf(headless, tmp_path / "heads", inputs)
        assert not (tmp_path / "heads").exists()
    else:
        export_hf(headless, tmp_path / "heads", inputs)
        loaded = auto.from_pretrained(tmp_path / "heads").eval()
        logits = loaded(**dict(zip(names, inputs, strict=True))).logits
        torch.testing.assert_close(logits, headless(*inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("family", GRAPHS)
def test_every_family_trains_distils_and_quantizes_on_every_backend(family: str):
    """Gradual unfreezing with layer-wise LRs, a student distilled on logits and attention
    maps, and every quantization mode that serves transformers, each graph verified."""
    import slimkit
    from slimkit.distillation.configs import AttentionPair, DistillConfig
    from slimkit.quantization import (
        Bf16Config,
        DynamicInt8Config,
        StaticInt8Config,
        WeightOnlyInt4Config,
    )
    from slimkit.training import TrainConfig

    data = family_bundle(family)
    net = _net(family)
    schedule = TrainConfig(epochs=2, batch_size=16, unfreeze="gradual", layer_lr_decay=0.8)
    assert len(slimkit.train(net, data, schedule).loss) == 2
    shared = FAMILIES.get(family).shared
    arch = Arch(source="tiny_models:tiny_hf", kwargs={"family": family})
    student = (
        copy.deepcopy(net)
        if shared
        else build_student(net, KeepEveryStudent(keep_every=2), arch, {})[0]
    )
    # ALBERT's one shared layer runs at every depth: its maps cannot be told apart by depth
    maps = () if shared else (AttentionPair(teacher=1, student=0),)
    slimkit.distill(net, student, data, DistillConfig(attention=maps), TrainConfig(epochs=1))
    configs = [
        DynamicInt8Config(recover=False),
        StaticInt8Config(calibration_samples=16, recover=False),
        WeightOnlyInt4Config(group_size=16, recover=False),
        DynamicInt8Config(backend="torchao", recover=False),
        Bf16Config(backend="torch", recover=False),
    ]
    for config in configs:
        quantized = slimkit.quantize(copy.deepcopy(student), config, data)
        if quantized.agreement is not None:  # each exported graph is checked against the model
            quantized.agreement.check(config.precision)
        # timed at the batch it is scored at: torch.compile specialises on shapes, and a second
        # batch size would compile the model again
        figures = slimkit.evaluate(quantized, data, batch_size=16, rounds=2)
        assert figures["runtime"] == quantized.runtime and figures["size_bytes"] > 0
    assert list(Path.cwd().iterdir()) == []  # nothing left in the user's working directory


def test_a_calibrator_that_cannot_read_a_graph_is_a_named_error(monkeypatch):
    """ONNX Runtime's histogram calibrators raise a bare ValueError on some graphs' tensors (its
    entropy calibrator did on a ViT's); the user reads which calibration failed and what needs
    no histogram."""
    import slimkit
    from slimkit.quantization import StaticInt8Config
    from slimkit.quantization import onnxruntime as ort_backend

    def inhomogeneous(*args: object, **kwargs: object) -> None:
        raise ValueError("setting an array element with a sequence (inhomogeneous shape)")

    monkeypatch.setattr(ort_backend, "quantize_static", inhomogeneous)
    config = StaticInt8Config(calibration_samples=16, estimator="entropy", recover=False)
    with pytest.raises(StepError, match=r"entropy calibration failed on this graph.*minmax"):
        slimkit.quantize(_net("bert"), config, family_bundle("bert"))
