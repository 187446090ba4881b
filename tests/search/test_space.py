"""What the search spaces draw: steps a recipe accepts, students trained like the baseline."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch
from torch import nn

from slimkit.distillation.configs import CurrentStudent, KeepEveryStudent, ShallowerStudent
from slimkit.pruning import ChannelConfig, HeadsConfig
from slimkit.pruning.sensitivity import LayerSensitivity
from slimkit.quantization import DynamicInt8Config, WeightOnlyInt8Config
from slimkit.recipe import Recipe, StepSpec
from slimkit.search.space import CNN_STUDENTS, SPACES, SpaceInputs, channel_groups

INPUTS = SpaceInputs(
    finetune={"epochs": 1, "lr": 5e-5},
    train={"epochs": 3, "lr": 5e-5},
    quantize=("none", "dynamic-int8@onnxruntime"),
    sensitive=("layers.0",),
    curves=(  # accuracy with only that layer magnitude-pruned to 50% / 80%
        LayerSensitivity("stem", 100, 99.0, {0.5: 90.0, 0.8: 50.0}),
        LayerSensitivity("layers.0", 1_000, 99.0, {0.5: 98.0, 0.8: 95.0}),
        LayerSensitivity("layers.1", 4_000, 99.0, {0.5: 99.0, 0.8: 98.5}),
    ),
    depth=6,
    vocab=True,
    heads_and_ffn=True,
)


def _draw(space: str, params: dict, inputs: SpaceInputs = INPUTS) -> tuple[list[StepSpec], dict]:
    study = optuna.create_study()
    study.enqueue_trial(params)
    trial = study.ask()
    return SPACES.get(space).draw(trial, inputs), trial.distributions


def _recipe(steps: list[StepSpec]) -> Recipe:
    """The steps as a recipe holds them: written out and read back as a user's YAML is."""
    recipe = Recipe.from_dict({"model": "m", "data": "d"}).with_steps(steps)
    assert Recipe.from_dict(recipe.to_dict()) == recipe
    return recipe


def test_a_transformer_student_keeps_evenly_spaced_layers_and_trains_as_long_as_the_baseline():
    steps, dists = _draw(
        "transformer",
        {
            "vocab_min_count": 1,
            "keep_every": 6,
            "student_lr": 4,
            "heads": 0.5,
            "ffn": 0.0,
            "structure_kd": False,
            "structure_epochs": 1,
            "quantize": "dynamic-int8@onnxruntime",
        },
    )
    assert dists["keep_every"].choices == (1, 2, 3, 6)  # the divisors of the depth
    assert dists["vocab_min_count"].choices == (1, 3)  # every trial trims the token table
    assert [s.kind for s in steps] == ["prune", "distill", "prune", "finetune", "quantize"]
    student = steps[1].config
    assert student.student == KeepEveryStudent(keep_every=6) and student.train.epochs == 3
    assert student.train.lr == pytest.approx(2e-4)
    assert dists["structure_epochs"].choices == (1, 3)  # the recovery's or the baseline's
    assert steps[3].config.train.epochs == 1  # repairing a pruned model is shorter
    assert steps[2].config == HeadsConfig(ratio=0.5)
    _recipe(steps)


@pytest.mark.parametrize("ratio", [0.0, 0.5])
def test_a_cnn_trial_prunes_channels_then_recovers_or_only_quantizes(ratio):
    params = {
        "channels": ratio,
        "spread": "uniform",
        "keep_sensitive": 1,
        "importance": "l2",
        "channels_kd": True,
        "channels_epochs": 3,
        "quantize": "none",
    }
    steps, _ = _draw("cnn", params)
    if not ratio:
        assert steps == []
        return
    assert steps[0].config == ChannelConfig(ratio=0.5, importance="l2", ignore=("layers.0",))
    assert steps[1].config.student == CurrentStudent(current=True)
    assert steps[1].config.train.epochs == 3
    _recipe(steps)


def test_a_cnn_trial_may_spread_the_ratio_over_layers_by_their_sensitivity():
    params = {
        "channels": 0.5,
        "importance": "l2",
        "spread": "sensitivity",
        "channels_kd": False,
        "channels_epochs": 1,
        "quantize": "none",
    }
    steps, dists = _draw("cnn", params)
    overrides = steps[0].config.overrides
    # the robust, heavy layer takes the cut; the fragile stem is left whole
    assert overrides == {"stem": 0.0, "layers.0": 0.0, "layers.1": 0.8}
    assert "keep_sensitive" not in dists
    _recipe(steps)


@pytest.mark.parametrize("space", ["cnn", "transformer"])
def test_the_corner_tried_first_is_a_point_of_the_space_and_its_most_compressed(space):
    corner = SPACES.get(space).corner(INPUTS)
    study = optuna.create_study()
    study.enqueue_trial(corner)
    trial = study.ask()
    steps = SPACES.get(space).draw(trial, INPUTS)
    assert trial.params == corner  # every choice was drawn, none fell outside its options
    assert steps[-1].config == DynamicInt8Config(backend="onnxruntime")
    if space == "transformer":
        # trimmed, one layer, half its heads and FFN neurons, distilled back
        kinds = ["prune", "distill", "prune", "prune", "distill", "quantize"]
        assert [s.kind for s in steps] == kinds
        assert steps[1].config.student == KeepEveryStudent(keep_every=INPUTS.depth)
        assert steps[2].config.ratio == max(trial.distributions["heads"].choices)
        assert steps[3].config.ratio == max(trial.distributions["ffn"].choices)
    else:
        assert steps[0].config.ratio == max(trial.distributions["channels"].choices)
    _recipe(steps)


@pytest.mark.parametrize(
    ("size", "depth", "grid"), [((28, 28), 2, 7), ((28, 28), 3, 7), ((8, 12), 3, 2)]
)
def test_a_cnn_trial_on_images_may_distil_a_shallow_student_that_keeps_its_last_epoch(
    size, depth, grid
):
    inputs = dataclasses.replace(
        INPUTS, image_size=size, quantize=("none", "weight-only-int8@onnxruntime")
    )
    name = next(n for n, (_, d) in CNN_STUDENTS.items() if d == depth)
    study = optuna.create_study()
    study.enqueue_trial(
        {"student": name, "student_epochs": 3, "quantize": "weight-only-int8@onnxruntime"}
    )
    trial = study.ask()
    steps = SPACES.get("cnn").draw(trial, inputs)
    assert "channels" not in trial.params  # the baseline's layers are not the student's
    distill = steps[0].config
    kwargs = distill.student.model.kwargs
    # the head sees where features are: the last map, pooled to at most 7 x 7
    assert kwargs == {"width": CNN_STUDENTS[name][0], "depth": depth, "grid": grid}
    assert distill.train.epochs == 3 * INPUTS.train["epochs"] and distill.train.keep_best is False
    assert steps[1].config == WeightOnlyInt8Config(backend="onnxruntime")
    _recipe(steps)


@pytest.mark.parametrize(
    ("offered", "weights"),
    [
        (("weight-only-int8@onnxruntime", "weight-only-int4@onnxruntime"), "int4"),
        (("weight-only-int8@onnxruntime",), "int8"),
    ],
)
def test_the_cnn_corner_on_images_is_the_smallest_student_with_the_fewest_weight_bits(
    offered, weights
):
    inputs = dataclasses.replace(
        INPUTS, image_size=(28, 28), quantize=("none", "static-int8@onnxruntime", *offered)
    )
    corner = SPACES.get("cnn").corner(inputs)
    assert corner == {
        "student": "w8-d2",
        "student_epochs": 3,  # the longest distillation offered
        "quantize": f"weight-only-{weights}@onnxruntime",
    }
    study = optuna.create_study()
    study.enqueue_trial(corner)
    trial = study.ask()
    SPACES.get("cnn").draw(trial, inputs)
    assert trial.params == corner


def test_a_large_cnn_on_images_is_pruned_not_replaced_by_a_plain_student():
    # EfficientNet-Lite0 at 224 px: arithmetic, not per-operator cost, makes its latency
    inputs = dataclasses.replace(
        INPUTS,
        image_size=(224, 224),
        macs=377_000_000,
        quantize=("none", "static-int8@openvino", "weight-only-int8@onnxruntime"),
    )
    corner = SPACES.get("cnn").corner(inputs)
    assert "student" not in corner and corner["channels"] == 0.75
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        SPACES.get("cnn").draw(trial, inputs)
        assert "student" not in trial.params
        study.tell(trial, 1.0)


def test_a_transformer_without_a_token_table_is_never_asked_to_trim_one():
    inputs = dataclasses.replace(INPUTS, vocab=False)
    corner = SPACES.get("transformer").corner(inputs)
    assert "vocab_min_count" not in corner
    study = optuna.create_study()
    study.enqueue_trial(corner)
    trial = study.ask()
    steps = SPACES.get("transformer").draw(trial, inputs)
    assert trial.params == corner
    # a one-layer student, half its heads and FFN pruned and distilled back
    assert [s.kind for s in steps] == ["distill", "prune", "prune", "distill", "quantize"]
    assert [s.config.method for s in steps[1:3]] == ["heads", "ffn"]


def test_the_transformer_corner_keeps_its_token_table_in_4_bits_where_nncf_quantizes():
    inputs = dataclasses.replace(
        INPUTS, quantize=("none", "static-int8@openvino", "dynamic-int8@onnxruntime")
    )
    corner = SPACES.get("transformer").corner(inputs)
    assert corner["int4_embeddings"] is True and corner["quantize"] == "static-int8@openvino"
    study = optuna.create_study()
    study.enqueue_trial(corner)
    trial = study.ask()
    steps = SPACES.get("transformer").draw(trial, inputs)
    assert trial.params == corner
    assert steps[-1].config.int4_embeddings is True
    _recipe(steps)
    # other quantizations are not asked about the table
    assert "int4_embeddings" not in SPACES.get("transformer").corner(INPUTS)


def test_a_transformer_whose_family_is_unknown_is_never_offered_heads_or_ffn_pruning():
    inputs = dataclasses.replace(INPUTS, heads_and_ffn=False)
    study = optuna.create_study()
    trial = study.ask()
    SPACES.get("transformer").draw(trial, inputs)
    assert trial.distributions["heads"].choices == (0.0,)
    assert trial.distributions["ffn"].choices == (0.0,)


def test_a_large_residual_cnn_corner_is_a_shallower_pruned_int8_copy_at_a_lower_resolution():
    # EfficientNet-Lite0 at 224 px, whose stages hold residual blocks to drop
    inputs = dataclasses.replace(
        INPUTS,
        image_size=(224, 224),
        macs=377_000_000,
        blocks=9,
        resizable=True,
        quantize=("none", "static-int8@onnxruntime", "weight-only-int8@openvino"),
    )
    corner = SPACES.get("cnn").corner(inputs)
    study = optuna.create_study()
    study.enqueue_trial(corner)
    trial = study.ask()
    steps = SPACES.get("cnn").draw(trial, inputs)
    assert trial.params == corner
    assert [s.kind for s in steps] == ["prune", "distill", "quantize"]
    distill = steps[1].config
    assert distill.student == ShallowerStudent(depth=0.5)  # half of each stage's blocks
    assert distill.resolution == 0.75  # seeing 168 of 224 px
    assert distill.teacher == "baseline" and distill.train.epochs == INPUTS.train["epochs"]
    assert steps[0].config.ratio == 0.25 and steps[0].config.overrides
    assert set(trial.distributions["depth"].choices) == {1.0, 0.5, 0.25}
    assert steps[2].config == WeightOnlyInt8Config(backend="openvino")
    _recipe(steps)
    fixed_head = SPACES.get("cnn").corner(dataclasses.replace(inputs, resizable=False))
    assert "resolution" not in fixed_head and fixed_head["depth"] == 0.5


def test_a_shallower_copy_alone_is_distilled_and_a_net_without_stages_is_never_offered_one():
    inputs = dataclasses.replace(INPUTS, blocks=3)
    params = {"channels": 0.0, "depth": 0.5, "channels_epochs": 1, "quantize": "none"}
    steps, _ = _draw("cnn", params, inputs)
    assert [s.kind for s in steps] == ["distill"]
    assert steps[0].config.student == ShallowerStudent(depth=0.5)
    _, dists = _draw("cnn", {"channels": 0.0, "quantize": "none"})
    assert "depth" not in dists


def test_a_student_at_a_lower_resolution_learns_from_the_baseline_and_only_where_it_can():
    inputs = dataclasses.replace(INPUTS, image_size=(224, 224), macs=377_000_000, resizable=True)
    params = {"channels": 0.0, "resolution": 0.75, "channels_epochs": 3, "quantize": "none"}
    steps, dists = _draw("cnn", params, inputs)
    assert [s.kind for s in steps] == ["distill"]
    distill = steps[0].config
    assert distill.resolution == 0.75 and distill.student == CurrentStudent(current=True)
    assert distill.teacher == "baseline" and distill.train.epochs == 3
    assert "channels_kd" not in dists  # never fine-tuned from labels alone
    assert set(dists["resolution"].choices) == {1.0, 0.875, 0.75, 0.625}
    full, _ = _draw("cnn", {**params, "resolution": 1.0, "channels_kd": True}, inputs)
    assert full == []  # nothing to recover from
    _, dists = _draw("cnn", {"channels": 0.0, "quantize": "none"})  # a head sized for 28 px
    assert "resolution" not in dists
    _recipe(steps)


def test_a_cnn_torch_pruning_cannot_trace_is_measured_by_its_convolutions_alone():
    class TakesTwo(nn.Module):  # traced with one example input, it raises
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.head = nn.Linear(4, 2)

        def forward(self, x, scale):
            return self.head(self.conv(x).mean(dim=(2, 3)) * scale)

    sizes = {"conv": 36, "head": 8}
    assert channel_groups(TakesTwo(), (torch.zeros(1, 1, 8, 8),), sizes) == {"conv": 36}
