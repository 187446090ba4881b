"""The recovery ladder: each rung measured and logged, the climb stopping once within budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.helpers import outlier_net

from slimkit.quantization import StaticInt8Config
from slimkit.quantization._candidates import build, val_accuracy
from slimkit.quantization.recovery import recover, sensitivity
from slimkit.sessions import session
from slimkit.training import train


def _first(net, data, cfg, out: Path):
    calibration = [inputs for inputs, _ in data.calibration(128).batches(32)]
    return build(net, cfg, data, out, calibration), calibration


def _accuracy(line: str) -> float:
    return float(line.split(": ")[1].split("%")[0])


@pytest.mark.slow
def test_the_ladder_climbs_in_order_and_keeps_the_best(blobs_npz: Path, tmp_path: Path):
    net, data = outlier_net(blobs_npz)
    cfg = StaticInt8Config(per_channel=False, max_accuracy_drop=0.5)
    first, calibration = _first(net, data, cfg, tmp_path / "q.onnx")
    result, final_cfg, log = recover(
        net,
        cfg,
        first,
        data=data,
        out_path=tmp_path / "q.onnx",
        batch_size=2,
        calibration=calibration,
    )
    start = float(log[0].split()[1].rstrip("%"))
    assert val_accuracy(lambda x: net(*x), data) - start > 10.0, "the model must miss the budget"
    rungs = [line.split(":")[0] for line in log[1:]]
    assert rungs[:6] == [
        "per-channel weights",
        "range estimator percentile",
        "range estimator entropy",
        "bias correction / cross-layer equalization",
        "accuracy-aware quantization",
        "sensitivity (accuracy with only that layer quantized)",
    ]
    assert "not offered by onnxruntime's quantizer; skipped" in log[4]
    assert "not offered by onnxruntime for static-int8" in log[5]
    assert log[7] == "keep 3 float: " + log[7].split(": ", 1)[1]  # the most sensitive layer first
    assert _accuracy(log[7]) >= start + 20.0
    # a rung is adopted only if it improves: per-channel gained nothing, so it was not kept
    assert final_cfg.ignore == ("3",) and not final_cfg.per_channel
    assert result.float_layers == ["3"] and result.artifact == tmp_path / "q.onnx"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".onnx") == ["q.onnx"]


def test_a_model_within_budget_climbs_nothing(blobs_npz: Path, tmp_path: Path):
    net, data = outlier_net(blobs_npz)
    cfg = StaticInt8Config(max_accuracy_drop=100.0)
    first, calibration = _first(net, data, cfg, tmp_path / "q.onnx")
    result, final_cfg, log = recover(
        net,
        cfg,
        first,
        data=data,
        out_path=tmp_path / "q.onnx",
        batch_size=2,
        calibration=calibration,
    )
    assert len(log) == 1 and log[0].startswith("start: ")
    assert result is first and final_cfg is cfg


def test_sensitivity_is_accuracy_with_only_that_layer_quantized(blobs_npz: Path, tmp_path: Path):
    net, data = outlier_net(blobs_npz)
    calibration = [inputs for inputs, _ in data.calibration(128).batches(32)]

    def attempt(cfg, loop=None):
        result = build(net, cfg, data, tmp_path / "s.onnx", calibration)
        assert len(result.float_layers) == 1  # all but one layer kept float
        sess = session(result.artifact, 1)
        return result, val_accuracy(
            lambda x: torch.from_numpy(sess.run(None, {"inputs": x[0].numpy()})[0]), data
        )

    ranked = dict(sensitivity(attempt, StaticInt8Config(), ["1", "3"]))
    assert ranked["3"] < ranked["1"] - 10.0  # quantizing layer 3's outlier input hurts most


@pytest.mark.slow
def test_short_qat_is_the_last_rung_when_a_trainer_is_given(blobs_npz: Path, tmp_path: Path):
    net, data = outlier_net(blobs_npz)
    cfg = StaticInt8Config(max_accuracy_drop=0.0)
    first, calibration = _first(net, data, cfg, tmp_path / "q.onnx")
    trained: list[int] = []

    def trainer(model, config):
        trained.append(config.epochs)
        train(model, data, config)

    _, _, log = recover(
        net,
        cfg,
        first,
        data=data,
        out_path=tmp_path / "q.onnx",
        batch_size=2,
        calibration=calibration,
        trainer=trainer,
    )
    assert trained == [1]
    assert any(line.startswith("short QAT (1 epoch, torchao PT2E): ") for line in log)
