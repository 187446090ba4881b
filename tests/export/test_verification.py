"""Every exported graph is checked, run and compared with PyTorch before anyone is told of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from slimkit.data import load_data
from slimkit.errors import ExportError
from slimkit.export import export_onnx, verify_onnx
from slimkit.models import ModelSpec, build_model
from slimkit.quantization import quantize
from slimkit.quantization.configs import StaticInt8Config


@pytest.fixture
def net_and_data(blobs_npz: Path, fixtures_on_path: Path):
    data = load_data(f"npz:{blobs_npz}")
    torch.manual_seed(0)
    return build_model(ModelSpec.parse("tiny_models:tiny_cnn")), data


def test_an_export_runs_in_plain_onnxruntime_and_matches_on_held_out_inputs(
    net_and_data, tmp_path: Path
):
    net, data = net_and_data
    held_out = data.held_out_inputs(16)
    traced = data.sample_inputs(2)
    assert not any(torch.equal(h, t) for h in held_out[0] for t in traced[0])
    path = export_onnx(net, traced, data.input_names, tmp_path / "m.onnx", held_out)
    got = ort.InferenceSession(str(path)).run(None, {"inputs": held_out[0].numpy()})[0]
    with torch.inference_mode():
        want = net(*held_out).numpy()
    assert np.abs(got - want).max() < 1e-3


def test_a_graph_that_computes_another_function_fails_with_the_largest_difference(
    net_and_data, tmp_path: Path
):
    net, data = net_and_data
    path = export_onnx(net, data.sample_inputs(2), data.input_names, tmp_path / "m.onnx")
    other = build_model(ModelSpec.parse("tiny_models:tiny_cnn"))  # fresh random weights
    with pytest.raises(ExportError, match=r"differ from PyTorch's by up to [0-9.]+ on held-out"):
        verify_onnx(path, other, data.held_out_inputs(), data.input_names, "fp32")


def test_tolerance_is_stated_per_precision(net_and_data, tmp_path: Path):
    net, data = net_and_data
    calibration = [x for x, _ in data.calibration(64).batches(16)]
    result = quantize(
        net,
        StaticInt8Config(calibration_samples=64),
        example_inputs=data.sample_inputs(8),
        input_names=data.input_names,
        out_path=tmp_path / "q.onnx",
        calibration=calibration,
        check_inputs=data.held_out_inputs(),
    )
    assert result.artifact is not None
    # int8 error is within the int8 tolerance but far beyond the fp32 one.
    verify_onnx(result.artifact, net, data.held_out_inputs(), data.input_names, "int8")
    with pytest.raises(ExportError, match="fp32 tolerance"):
        verify_onnx(result.artifact, net, data.held_out_inputs(), data.input_names, "fp32")


def test_a_torn_graph_file_is_refused(net_and_data, tmp_path: Path):
    net, data = net_and_data
    path = export_onnx(net, data.sample_inputs(2), data.input_names, tmp_path / "m.onnx")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ExportError):
        verify_onnx(path, net, data.held_out_inputs(), data.input_names, "fp32")


def test_a_quantized_graph_far_from_its_float_model_is_reported_with_its_difference(
    blobs_npz: Path, tmp_path: Path
):
    from tests.helpers import outlier_net

    from slimkit.quantization._candidates import build

    net, data = outlier_net(blobs_npz)
    calibration = [inputs for inputs, _ in data.calibration(128).batches(32)]
    config = StaticInt8Config(per_channel=False)
    result = build(net, config, data, tmp_path / "q.onnx", calibration)
    assert result.agreement is not None
    with pytest.raises(ExportError, match=r"int8 ONNX model's outputs differ .*recovery ladder"):
        result.agreement.check("int8")


def test_one_model_exported_again_is_traced_once_and_a_changed_one_afresh(
    net_and_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Served on a runtime, then quantized, then re-quantized per rung of the recovery ladder:
    one model is traced once, whatever the batch it is traced at. A model whose weights
    changed is traced again, and so is one whose kept graph no longer computes what the model
    does."""
    from slimkit.export import onnx as onnx_export
    from slimkit.quantization.configs import DynamicInt8Config

    net, data = net_and_data
    traces: list[int] = []
    real_trace = onnx_export._trace

    def counting(*args, **kwargs) -> None:
        traces.append(1)
        real_trace(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "_trace", counting)
    monkeypatch.setattr(onnx_export, "_TRACED", {})
    inputs = data.sample_inputs(8)

    def error_vs_float(path: Path) -> float:
        """Largest |graph - model logit| over the largest |model logit|."""
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"inputs": inputs[0].numpy()})[0]
        with torch.inference_mode():
            want = net(*inputs).numpy()
        return float(np.abs(got - want).max() / np.abs(want).max())

    def quantized() -> float:
        q = quantize(
            net,
            DynamicInt8Config(),
            example_inputs=data.sample_inputs(4),
            input_names=data.input_names,
            out_path=tmp_path / "q.onnx",
        )
        return error_vs_float(q.artifact)

    served = export_onnx(net, data.sample_inputs(1), data.input_names, tmp_path / "m.onnx")
    assert error_vs_float(served) < 1e-4
    assert quantized() < 0.1 and quantized() < 0.1
    assert len(traces) == 1

    with torch.no_grad():
        net[8].weight.mul_(-1.0)  # the classifier flipped: other logits
    assert quantized() < 0.1
    assert len(traces) == 2

    monkeypatch.setattr(onnx_export, "model_digest", lambda model: "one key for every model")
    quantized()
    assert len(traces) == 3
    with torch.no_grad():
        net[8].weight.mul_(-1.0)  # back: the graph kept under the (same) key is stale
    assert quantized() < 0.1
    assert len(traces) == 4
