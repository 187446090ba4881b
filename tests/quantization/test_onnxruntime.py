"""int8 quantization with ONNX Runtime: a real, smaller, verified int8 graph."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from slimkit.data import load_data
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.models import ModelSpec, build_model
from slimkit.quantization import DynamicInt8Config, StaticInt8Config, quantize
from slimkit.runtimes.onnxruntime import session
from slimkit.training import TrainConfig, train


@pytest.fixture
def trained(blobs_npz: Path, fixtures_on_path: Path):
    data = load_data(str(blobs_npz))
    net = build_model(
        ModelSpec.parse({"source": "tiny_models:tiny_cnn", "kwargs": {"width": 8}}),
        num_classes=3,
        in_channels=1,
    )
    train(net, data, TrainConfig(epochs=5, lr=0.02, batch_size=16))
    return net, data


def _onnx_accuracy(path: Path, data) -> float:
    sess = session(path, threads=1)
    return accuracy(
        *predict(
            lambda x: __import__("torch").from_numpy(sess.run(None, {"inputs": x[0].numpy()})[0]),
            data.test.batches(64),
        )
    )


@pytest.mark.parametrize("estimator", ["minmax", "percentile", "entropy"])
def test_static_int8_is_int8_smaller_and_accurate(trained, tmp_path: Path, estimator: str):
    net, data = trained
    calibration = [inputs for inputs, _ in data.calibration(64).batches(16)]
    path = quantize(
        net,
        StaticInt8Config(estimator=estimator),
        example_inputs=data.sample_inputs(4),
        input_names=data.input_names,
        out_path=tmp_path / "q.onnx",
        calibration=calibration,
    )
    graph = onnx.load(str(path)).graph
    conv_weights = [i for i in graph.initializer if i.name.endswith("weight_quantized")]
    assert len(conv_weights) == 3 and all(
        i.data_type == onnx.TensorProto.INT8 for i in conv_weights
    )
    assert {n.op_type for n in graph.node} >= {"QuantizeLinear", "DequantizeLinear", "Conv"}
    float_acc = accuracy(*predict(lambda x: net(*x), data.test.batches(64)))
    assert abs(_onnx_accuracy(path, data) - float_acc) <= 5.0


def test_dynamic_int8_quantizes_the_linear_layer(trained, tmp_path: Path):
    net, data = trained
    path = quantize(
        net,
        DynamicInt8Config(),
        example_inputs=data.sample_inputs(4),
        input_names=data.input_names,
        out_path=tmp_path / "d.onnx",
    )
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeLinear" in ops
