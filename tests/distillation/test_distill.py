"""Students built from teachers, distilled with soft targets, hints and attention maps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.helpers import tiny_recipe
from torch import nn

import slimkit
from slimkit.data import load_data
from slimkit.data.bundle import ArrayDataset, DataBundle
from slimkit.distillation.configs import (
    AttentionPair,
    DistillConfig,
    HintPair,
    KeepEveryStudent,
    KeepLayersStudent,
    NarrowerStudent,
)
from slimkit.distillation.features import attention_kl
from slimkit.distillation.step import DistillStepConfig
from slimkit.distillation.students import build_student
from slimkit.distillation.task import distill
from slimkit.errors import RecipeError, StepError
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.models import ModelSpec, build_model, save_model
from slimkit.models.arch import Arch, KeptLayers
from slimkit.training import TrainConfig, train

BERT_ARCH = Arch(source="tiny_models:tiny_bert", kwargs={"num_classes": 3})


def _bert_data(n: int = 96) -> DataBundle:
    """Token sequences whose class is which of three marker tokens they contain."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 50, (n, 12), generator=g)
    labels = torch.arange(n) % 3
    ids[torch.arange(n), torch.randint(0, 12, (n,), generator=g)] = labels + 1
    mask = torch.ones_like(ids)
    mask[::4, 9:] = 0  # some padding, so attention transfer must skip padded queries
    split = ArrayDataset((ids, mask), labels)
    return DataBundle("markers", split, split, split, 3, ("input_ids", "attention_mask"))


@pytest.fixture
def bert_teacher(fixtures_on_path: Path):
    torch.manual_seed(0)
    net = build_model(ModelSpec.parse("tiny_models:tiny_bert"), num_classes=3)
    train(net, _bert_data(), TrainConfig(epochs=8, lr=3e-3, batch_size=16))
    return net


def _acc(net, data: DataBundle) -> float:
    return accuracy(*predict(lambda x: net(*x), data.test.batches(64)))


def test_layer_dropped_student_keeps_teacher_weights_and_reloads(bert_teacher, tmp_path: Path):
    student, arch = build_student(bert_teacher, KeepEveryStudent(keep_every=2), BERT_ARCH, {})
    assert len(student.encoder.encoder.layer) == 1
    assert student.encoder.config.num_hidden_layers == 1
    assert arch.layers == KeptLayers(path="encoder.encoder.layer", keep=(1,))
    kept = student.encoder.encoder.layer[0].output.dense.weight
    assert torch.equal(kept, bert_teacher.encoder.encoder.layer[1].output.dense.weight)
    assert len(bert_teacher.encoder.encoder.layer) == 2  # the teacher is untouched
    path = save_model(student, tmp_path / "student.safetensors", arch)
    again = build_model(ModelSpec.parse(str(path)))
    ids = torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        assert torch.equal(
            again(ids, torch.ones_like(ids)), student.eval()(ids, torch.ones_like(ids))
        )


def test_width_student_is_the_same_architecture_narrower():
    arch = Arch(source="resnet-mini", kwargs={"num_classes": 10, "in_channels": 1})
    teacher = build_model(ModelSpec(source="resnet-mini"), num_classes=10, in_channels=1)
    student, student_arch = build_student(teacher, NarrowerStudent(width=0.5), arch, {})
    assert student_arch.kwargs["width"] == 8 and student.stem[0].out_channels == 8
    teacher_params = sum(p.numel() for p in teacher.parameters())
    assert sum(p.numel() for p in student.parameters()) < teacher_params / 3


def test_student_needs_exactly_one_recipe(fixtures_on_path):
    with pytest.raises(RecipeError, match="exactly one of"):
        DistillStepConfig.from_dict({"student": {"width": 0.5, "keep_every": 2}}, "distill")
    with pytest.raises(RecipeError, match="exactly one of"):
        DistillStepConfig.from_dict({"student": {}}, "distill")
    with pytest.raises(StepError, match="takes none"):
        build_student(None, NarrowerStudent(width=0.5), Arch(source="tiny_models:mlp"), {})


def test_mismatched_teacher_and_student_outputs_are_refused(blobs_npz: Path, fixtures_on_path):
    data = load_data(str(blobs_npz))
    teacher = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3)
    student = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=4)
    with pytest.raises(
        StepError, match=r"teacher outputs \(3,\) per example but the student \(4,\)"
    ):
        distill(teacher, student, data, DistillConfig(), TrainConfig())


def test_unknown_hint_layer_names_the_layer(blobs_npz: Path, fixtures_on_path):
    data = load_data(str(blobs_npz))
    teacher = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3)
    student = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, width=2)
    config = DistillConfig(hints=(HintPair(teacher="4", student="44"),))
    with pytest.raises(StepError, match=r"student has no layer '44'.*Did you mean '4'"):
        distill(teacher, student, data, config, TrainConfig())


def test_cached_and_live_teacher_train_the_same_student(blobs_npz: Path, fixtures_on_path):
    data = load_data(str(blobs_npz))
    torch.manual_seed(0)
    teacher = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3)
    train(teacher, data, TrainConfig(epochs=4, lr=0.02, batch_size=16))
    runs = []
    for cache in (True, False):
        torch.manual_seed(1)
        student = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, width=2)
        # SGD, not Adam: Adam's per-weight normalisation turns rounding-level gradients (a conv
        # bias before BatchNorm has no effect on the loss) into full steps, and the two runs'
        # soft targets differ in rounding (cached logits come from batches of 64, live ones
        # from batches of 16)
        schedule = TrainConfig(epochs=6, lr=0.1, batch_size=16, optimizer="sgd")
        config = DistillConfig(cache_teacher=cache)
        runs.append((distill(teacher, student, data, config, schedule), student))
    (cached, student), (live, _) = runs
    assert _acc(student, data) >= 90.0
    # Same batches, same soft targets: the losses agree to float rounding
    assert cached.loss == pytest.approx(live.loss, rel=1e-4)


def _flip_invariant(width: int = 4) -> nn.Module:
    """Pointwise convolutions and global pooling: the same output for every flip of its input."""
    return nn.Sequential(
        nn.Conv2d(1, width, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 3),
    )


def test_a_teacher_cached_over_flips_trains_as_it_does_live_on_each_flip(
    blobs_npz: Path, fixtures_on_path
):
    data = load_data(str(blobs_npz))
    torch.manual_seed(0)
    teacher = _flip_invariant()
    train(teacher, data, TrainConfig(epochs=3, lr=0.02, batch_size=16))
    runs = []
    for cache in (True, False):
        torch.manual_seed(1)
        student = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, width=2)
        schedule = TrainConfig(
            epochs=4, lr=0.1, batch_size=16, optimizer="sgd", augment=("random-flip",)
        )
        runs.append(distill(teacher, student, data, DistillConfig(cache_teacher=cache), schedule))
    cached, live = runs
    # the average over the four flips is each flip's own target for this teacher
    assert cached.loss == pytest.approx(live.loss, rel=1e-4)


def test_the_teacher_is_cached_in_the_training_precision(blobs_npz: Path, fixtures_on_path):
    data = load_data(str(blobs_npz))
    teacher = _flip_invariant()
    computed: list[torch.dtype] = []
    teacher[0].register_forward_hook(lambda _m, _i, out: computed.append(out.dtype))
    student = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, width=2)
    schedule = TrainConfig(epochs=1, batch_size=32, augment=("random-flip",), precision="bf16")
    distill(teacher, student, data, DistillConfig(), schedule)
    # the cache is the last calls, four flips of each batch of 64, run as the live teacher would
    # be: under the training's bf16 autocast (the calls before check shapes and layout)
    cache = 4 * -(-len(data.train.labels) // 64)
    assert computed[-cache:] == [torch.bfloat16] * cache
    assert torch.bfloat16 not in computed[:-cache]


@pytest.mark.parametrize(("augment", "grows"), [("random-flip", False), ("random-shift", True)])
def test_the_teacher_runs_once_where_augmentation_draws_from_symmetries(
    blobs_npz: Path, fixtures_on_path, augment: str, grows: bool
):
    data = load_data(str(blobs_npz))
    teacher = _flip_invariant()
    calls = [0]
    teacher.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    per_run = []
    for epochs in (1, 3):
        calls[0] = 0
        student = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, width=2)
        schedule = TrainConfig(epochs=epochs, batch_size=32, augment=(augment,))
        distill(teacher, student, data, DistillConfig(), schedule)
        per_run.append(calls[0])
    assert (per_run[1] > per_run[0]) is grows  # the teacher's cost grows with the epochs


def _unexplained(student, teacher, inputs: torch.Tensor, layer: str) -> float:
    """1 - R² of the best linear map from the student's layer output to the teacher's."""
    feats = []
    for net in (student, teacher):
        out: list[torch.Tensor] = []
        hook = net.get_submodule(layer).register_forward_hook(
            lambda _m, _a, o, out=out: out.append(o)
        )
        with torch.no_grad():
            net.eval()(inputs)
        hook.remove()
        feats.append(out[0].permute(0, 2, 3, 1).reshape(-1, out[0].shape[1]))
    s, t = feats
    s = torch.cat([s, torch.ones(len(s), 1)], dim=1)
    residual = t - s @ torch.linalg.lstsq(s, t).solution
    return float(residual.pow(2).sum() / (t - t.mean(0)).pow(2).sum())


def test_hints_pull_student_features_toward_the_teacher(blobs_npz: Path, fixtures_on_path):
    data = load_data(str(blobs_npz))
    torch.manual_seed(0)
    teacher = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, width=8)
    train(teacher, data, TrainConfig(epochs=4, lr=0.02, batch_size=16))
    unexplained = {}
    for weight in (0.0, 20.0):
        torch.manual_seed(1)
        student = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, width=4)
        hint = HintPair(teacher="5", student="5")
        config = DistillConfig(hints=(hint,), hint_weight=weight)
        schedule = TrainConfig(epochs=8, lr=0.03, batch_size=16)
        history = distill(teacher, student, data, config, schedule)
        assert max(history.val_accuracy) >= 90.0
        unexplained[weight] = _unexplained(student, teacher, data.test.inputs[0][:], "5")
    assert unexplained[20.0] < 0.7 * unexplained[0.0]
    assert next(n for n, _ in student.named_parameters()) == "0.weight"  # projection not kept


def test_attention_transfer_brings_student_maps_toward_the_teacher(bert_teacher):
    data = _bert_data()
    torch.manual_seed(3)
    ids, mask = data.test.inputs

    def maps(net, layer: int) -> torch.Tensor:
        out = net.encoder(input_ids=ids, attention_mask=mask, output_attentions=True)
        return out.attentions[layer]

    results = {}
    for weight in (0.0, 10.0):
        student, _ = build_student(bert_teacher, KeepLayersStudent(keep_layers=(0,)), BERT_ARCH, {})
        torch.nn.init.normal_(student.encoder.encoder.layer[0].attention.self.query.weight, std=0.3)
        config = DistillConfig(
            attention=(AttentionPair(teacher=1, student=0),), attention_weight=weight
        )
        distill(bert_teacher, student, data, config, TrainConfig(epochs=4, lr=3e-3, batch_size=16))
        for net in (student, bert_teacher):
            net.encoder.set_attn_implementation("eager")
        with torch.no_grad():
            results[weight] = float(attention_kl(maps(student, 0), maps(bert_teacher, 1), mask))
        assert student.encoder.config._attn_implementation == "eager"
    assert results[10.0] < 0.5 * results[0.0]


def test_distill_step_in_a_recipe_saves_a_student_that_reloads(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path
):
    recipe = tiny_recipe(
        blobs_npz,
        model={"source": "resnet-mini", "kwargs": {"width": 8}},
        steps=[
            {
                "distill": {
                    "student": {"width": 0.5},
                    "epochs": 3,
                    "lr": 0.01,
                    "batch_size": 16,
                    "temperature": 3.0,
                }
            }
        ],
    )
    result = slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "run")
    base, student = result.results["steps"]
    assert student["params"] < base["params"] / 3
    assert student["accuracy"] >= 85.0
    assert "T=3, alpha=0.5" in " ".join(student["notes"])
    reloaded = build_model(ModelSpec.parse(str(result.run_dir / student["artifact"])))
    assert reloaded.stem[0].out_channels == 4
