"""PT2E static int8 and QAT (torchao, torch.compile), and backend auto's measured choice."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

import slimkit
from slimkit.errors import RecipeError, StepError
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.quantization import QatConfig, StaticInt8Config, parse_quantize_config, quantize
from slimkit.quantization.auto import choose_backend
from slimkit.training import TrainConfig, train


def _acc(engine, data) -> float:
    return accuracy(*predict(engine, data.test.batches(64)))


@pytest.mark.parametrize("estimator", ["minmax", "mse"])
def test_pt2e_static_int8_converts_every_conv_and_linear(trained, tmp_path: Path, estimator: str):
    net, data = trained
    calibration = [inputs for inputs, _ in data.calibration(64).batches(16)]
    result = quantize(
        net,
        StaticInt8Config(backend="torchao", estimator=estimator),
        example_inputs=data.sample_inputs(4),
        input_names=data.input_names,
        out_path=tmp_path / "q.onnx",
        calibration=calibration,
    )
    assert result.runtime == "compile" and result.artifact.suffix == ".pt2"
    assert result.quantized_layers == 3 and result.float_layers == []
    targets = [str(n.target) for n in result.module.graph.nodes if n.op == "call_function"]
    assert sum("quantize_per_tensor" in t for t in targets) >= 3  # activations
    assert abs(_acc(lambda x: result.module(*x), data) - _acc(lambda x: net(*x), data)) <= 5.0
    program = torch.export.load(str(result.artifact))  # the artifact reloads
    x = data.sample_inputs(3)
    torch.testing.assert_close(program.module()(*x), result.module(*x))
    stored = list(program.state_dict.values()) + list(program.constants.values())
    int8 = sum(t.numel() for t in stored if t.dtype == torch.int8)
    floats = sum(t.numel() for t in stored if t.dtype == torch.float32)
    weights = sum(
        m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    )
    assert int8 == weights and floats < weights / 4  # int8 weights; no float copies left behind


@pytest.mark.slow
def test_qat_trains_through_fake_quant_and_converts(trained, tmp_path: Path):
    net, data = trained
    seen: list[bool] = []

    def loop(model):
        seen.append(True)
        train(model, data, TrainConfig(epochs=1, lr=1e-3, batch_size=16))

    result = quantize(
        net,
        QatConfig(),
        example_inputs=data.sample_inputs(4),
        input_names=data.input_names,
        out_path=tmp_path / "q.onnx",
        train_loop=loop,
    )
    assert seen == [True] and result.runtime == "compile" and result.quantized_layers == 3
    assert _acc(lambda x: result.module(*x), data) >= 80.0
    x = data.sample_inputs(3)
    reloaded = torch.export.load(str(result.artifact)).module()
    torch.testing.assert_close(reloaded(*x), result.module(*x))


class _PlanesAndRows(torch.nn.Module):
    """A 2-D convolution over the image, then a 1-D one over its rows, each with BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.planes = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU()
        )
        self.rows = torch.nn.Sequential(
            torch.nn.Conv1d(4 * 8, 8, 3, padding=1), torch.nn.BatchNorm1d(8), torch.nn.ReLU()
        )
        self.head = torch.nn.Linear(8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        planes = self.planes(x)  # N, 4, 8, 8
        rows = self.rows(planes.permute(0, 3, 1, 2).flatten(1, 2))  # N, 8, 8
        return self.head(rows.flatten(1))


@pytest.mark.slow  # a QAT conversion and one kind's patterns (docs/measurements.md, "QAT conversion")
def test_qat_folds_batchnorm_as_torchao_alone_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """torchao folds each BatchNorm into its convolution by building patterns for every kind of
    convolution; slimkit has it build them only for the kinds a graph holds. Those kinds are
    folded as before, and for a kind the graph lacks the graph ends exactly as torchao leaves it
    after building that kind's patterns and matching none."""
    import torch.nn.functional as F
    import torchao.quantization.pt2e.qat_utils as qat_utils

    from slimkit.quantization import pt2e

    helper = qat_utils._fold_conv_bn_qat_helper
    at_fold: list[torch.fx.GraphModule] = []  # the graph as convert_pt2e starts folding

    def recording(m: torch.fx.GraphModule, *args, **kwargs) -> torch.fx.GraphModule:
        if not at_fold:
            at_fold.append(copy.deepcopy(m))
        return helper(m, *args, **kwargs)

    def loop(model) -> None:  # BatchNorm statistics from a few batches in training mode
        model.train()
        with torch.no_grad():
            for batch in x.split(16):
                model(batch)

    monkeypatch.setattr(qat_utils, "_fold_conv_bn_qat_helper", recording)
    torch.manual_seed(0)
    x = torch.randn(64, 1, 8, 8)
    net = _PlanesAndRows()
    result = quantize(
        net,
        QatConfig(),
        example_inputs=(x[:4],),
        input_names=("pixels",),
        out_path=tmp_path / "q.pt2",
        train_loop=loop,
    )
    ops = [str(n.target) for n in result.module.graph.nodes if n.op == "call_function"]
    assert "aten.conv1d.default" in ops and "aten.conv2d.default" in ops
    # The int8 2-D convolution's BatchNorm is folded into it; torchao's x86 quantizer leaves the
    # 1-D one in float, and its BatchNorm as it was trained.
    assert ops.count("aten.batch_norm.default") == 1
    with torch.no_grad():
        want = net.eval()(x)
    error = (result.module(x) - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt()
    assert float(error) < 0.25  # int8's tolerance

    absent = (F.conv_transpose1d, (torch.randn(1, 1, 3), torch.randn(1, 1, 1), *torch.randn(4, 1)))
    alone = helper(copy.deepcopy(at_fold[0]), *absent, False)
    with pt2e._fold_present_convs_only():
        scoped = qat_utils._fold_conv_bn_qat_helper(copy.deepcopy(at_fold[0]), *absent, False)
    assert scoped.code == alone.code
    with torch.no_grad():
        torch.testing.assert_close(scoped(x), alone(x), rtol=0, atol=0)


def test_qat_without_a_training_loop_is_refused(trained, tmp_path: Path):
    net, data = trained
    with pytest.raises(StepError, match="qat trains the model: pass train_loop"):
        quantize(
            net,
            QatConfig(),
            example_inputs=data.sample_inputs(4),
            input_names=data.input_names,
            out_path=tmp_path / "q.onnx",
        )


@pytest.mark.slow
def test_auto_measures_every_candidate_and_keeps_the_fastest_in_budget(trained, tmp_path: Path):
    net, data = trained
    out = tmp_path / "artifacts"
    out.mkdir()
    calibration = [inputs for inputs, _ in data.calibration(64).batches(16)]
    result, chosen, candidates = choose_backend(
        net,
        StaticInt8Config(backend="auto", max_accuracy_drop=5.0),
        data=data,
        out_path=out / "q.onnx",
        batch_size=2,
        calibration=calibration,
    )
    assert [c.backend for c in candidates] == ["onnxruntime", "torchao", "openvino"]
    assert all(
        c.skipped is None and c.latency_ms > 0 and c.accuracy is not None for c in candidates
    )
    fastest = min(candidates, key=lambda c: c.latency_ms)
    assert chosen.backend == fastest.backend
    assert result.artifact.parent == out and result.artifact.stem == "q"
    # no leftovers: the artifact, and an OpenVINO IR's weights beside it
    kept = {result.artifact.name} | ({"q.bin"} if result.artifact.suffix == ".xml" else set())
    assert {p.name for p in out.iterdir()} == kept


def test_auto_skips_backends_that_cannot_honour_the_options(trained, tmp_path: Path):
    net, data = trained
    calibration = [inputs for inputs, _ in data.calibration(32).batches(16)]
    _, chosen, candidates = choose_backend(
        net,
        StaticInt8Config(backend="auto", estimator="percentile"),
        data=data,
        out_path=tmp_path / "q.onnx",
        batch_size=1,
        calibration=calibration,
    )
    assert chosen.backend == "onnxruntime"
    assert "torchao (PT2E) offers minmax and mse" in candidates[1].skipped


def test_auto_is_a_step_feature_not_a_bare_call(trained, tmp_path: Path):
    net, data = trained
    with pytest.raises(StepError, match="choose_backend"):
        quantize(
            net,
            StaticInt8Config(backend="auto"),
            example_inputs=data.sample_inputs(2),
            input_names=data.input_names,
            out_path=tmp_path / "q.onnx",
        )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"mode": "static-int8", "backend": "torchao", "estimator": "entropy"},
            "torchao \\(PT2E\\) offers minmax and mse",
        ),
        ({"mode": "static-int8", "estimator": "mse"}, "estimator mse runs on torchao"),
        (
            {"mode": "static-int8", "backend": "torchao", "activations": "int8"},
            "uint8 activations only",
        ),
        ({"mode": "static-int8", "backend": "torchao", "per_channel": False}, "per channel"),
        (
            {"mode": "qat", "backend": "onnxruntime"},
            "qat cannot run on onnxruntime; it runs on: torchao",
        ),
    ],
)
def test_options_a_backend_cannot_honour_are_refused(data, message):
    with pytest.raises(RecipeError, match=message):
        parse_quantize_config(data, "q")


@pytest.mark.slow
def test_pipeline_quantize_step_reports_auto_choice_coverage_and_speed(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path
):
    recipe = slimkit.Recipe.from_dict(
        {
            "model": {"source": "tiny_models:tiny_cnn", "kwargs": {"width": 8}},
            "data": f"npz:{blobs_npz}",
            "baseline": {"train": {"epochs": 3, "lr": 0.02, "batch_size": 16}},
            "evaluation": {"batch_size": 2, "warmup": 1, "rounds": 2, "per_round": 2},
            "steps": [
                {
                    "quantize": {
                        "mode": "static-int8",
                        "backend": "auto",
                        "calibration_samples": 32,
                        "max_accuracy_drop": 10.0,
                    }
                }
            ],
        }
    )
    step = slimkit.run(recipe, out=tmp_path / "run").results["steps"][1]
    notes = " | ".join(step["notes"])
    assert "backend auto chose" in notes and "onnxruntime:" in notes and "torchao:" in notes
    assert "3 weight layers quantized" in notes
    assert "than the float model on" in notes
    assert step["runtime"] in ("onnxruntime", "compile")
    assert step["artifact"].endswith((".onnx", ".pt2"))


def test_narrower_weights_stay_in_their_integer_range(trained, tmp_path: Path):
    net, data = trained
    calibration = [inputs for inputs, _ in data.calibration(64).batches(16)]
    result = quantize(
        net,
        StaticInt8Config(backend="torchao", weight_bits=4),
        example_inputs=data.sample_inputs(4),
        input_names=data.input_names,
        out_path=tmp_path / "q.onnx",
        calibration=calibration,
    )
    program = torch.export.load(str(result.artifact))
    stored = [
        t
        for t in [*program.state_dict.values(), *program.constants.values()]
        if t.dtype == torch.int8
    ]
    assert stored and all(int(t.min()) >= -8 and int(t.max()) <= 7 for t in stored)
    assert any(int(t.min()) == -8 or int(t.max()) == 7 for t in stored)  # the range is used


@pytest.mark.slow
def test_qat_can_distill_from_the_float_model(trained, tmp_path: Path):
    from slimkit.quantization.inputs import qat_train_loop

    net, data = trained
    config = QatConfig.from_dict(
        {
            "train": {"epochs": 1, "lr": 1e-3, "batch_size": 16},
            "distill": {"temperature": 2.0, "alpha": 1.0},
        }
    )
    calls: list[float] = []

    class Teacher(torch.nn.Module):
        def forward(self, x):
            calls.append(1.0)
            return net(x)

    result = quantize(
        net,
        config,
        example_inputs=data.sample_inputs(4),
        input_names=data.input_names,
        out_path=tmp_path / "q.onnx",
        train_loop=qat_train_loop(config, data, Teacher()),
    )
    assert len(calls) == len(data.loader("train", 16))  # the teacher saw every training batch
    assert _acc(lambda x: result.module(*x), data) >= 80.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mode": "static-int8", "weight_bits": 4}, "weight_bits below 8 runs on torchao"),
        ({"mode": "qat", "weight_bits": 1}, "greater than or equal to 2"),
        ({"mode": "qat", "distill": {"alpha": 2}}, "less than or equal to 1"),
    ],
)
def test_bad_narrow_weight_and_distillation_options(data, message):
    with pytest.raises(RecipeError, match=message):
        parse_quantize_config(data, "q")
