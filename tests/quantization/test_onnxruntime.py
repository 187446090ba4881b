"""ONNX Runtime modes: real int8 / 4-bit graphs, verified, smaller, and reloadable."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
from tests.quantization.tiny import TokenNet, token_batches

from slimkit.errors import StepError
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.export import export_onnx
from slimkit.quantization import (
    DynamicInt8Config,
    StaticInt8Config,
    WeightOnlyInt4Config,
    WeightOnlyInt8Config,
    quantize,
)
from slimkit.runtimes.onnxruntime import weight_only


def _plain_session_accuracy(path: Path, data) -> float:
    """Accuracy through a plain onnxruntime.InferenceSession, as a user would load the file."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return accuracy(
        *predict(
            lambda x: torch.from_numpy(sess.run(None, {"inputs": x[0].numpy()})[0]),
            data.test.batches(64),
        )
    )


@pytest.mark.parametrize("estimator", ["minmax", "percentile", "entropy"])
def test_static_int8_is_int8_smaller_and_accurate(trained, tmp_path: Path, estimator: str):
    net, data = trained
    before = {k: v.clone() for k, v in net.state_dict().items()}
    calibration = [inputs for inputs, _ in data.calibration(64).batches(16)]
    result = quantize(
        net,
        StaticInt8Config(estimator=estimator),
        example_inputs=data.sample_inputs(4),
        input_names=data.input_names,
        out_path=tmp_path / "q.onnx",
        calibration=calibration,
    )
    assert (
        result.runtime == "onnxruntime"
        and result.quantized_layers == 3
        and result.float_layers == []
    )
    graph = onnx.load(str(result.artifact)).graph
    # Stored tensors keep their layer as a name prefix ("0/1"), so the size breakdown finds them.
    weights = [i for i in graph.initializer if len(i.dims) >= 2]  # 2 convs and the linear
    assert len(weights) == 3 and all(
        i.data_type == onnx.TensorProto.INT8 and i.name.split("/")[0] in ("0", "3", "8")
        for i in weights
    )
    float_acc = accuracy(*predict(lambda x: net(*x), data.test.batches(64)))
    assert abs(_plain_session_accuracy(result.artifact, data) - float_acc) <= 5.0
    assert all(
        torch.equal(before[k], v) for k, v in net.state_dict().items()
    )  # float model untouched
    assert _smaller_than_float(result, net, data, tmp_path)


def _stored_bytes(path: Path) -> int:
    """Bytes of a graph's stored tensors: on a tiny net the graph itself outweighs the weights."""
    return sum(onnx.numpy_helper.to_array(i).nbytes for i in onnx.load(str(path)).graph.initializer)


def _smaller_than_float(result, net, data, tmp_path: Path) -> bool:
    float_graph = export_onnx(net, data.sample_inputs(4), data.input_names, tmp_path / "f.onnx")
    return _stored_bytes(result.artifact) < 0.5 * _stored_bytes(float_graph)


def test_dynamic_int8_is_smaller_close_and_reloads(trained, tmp_path: Path):
    net, data = trained
    result = quantize(
        net,
        DynamicInt8Config(),
        example_inputs=data.sample_inputs(4),
        input_names=data.input_names,
        out_path=tmp_path / "d.onnx",
    )
    ops = {n.op_type for n in onnx.load(str(result.artifact)).graph.node}
    assert ops & {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"}
    assert _smaller_than_float(result, net, data, tmp_path)
    float_acc = accuracy(*predict(lambda x: net(*x), data.test.batches(64)))
    assert abs(_plain_session_accuracy(result.artifact, data) - float_acc) <= 5.0


def test_embeddings_left_float_are_named(tmp_path: Path):
    torch.manual_seed(0)
    net = TokenNet().eval()
    (ids,) = next(token_batches(8))
    result = quantize(
        net,
        StaticInt8Config(),
        example_inputs=(ids,),
        input_names=("input_ids",),
        out_path=tmp_path / "s.onnx",
        calibration=list(token_batches(8)),
    )
    graph = onnx.load(str(result.artifact)).graph
    table_is_float = any(
        i.name == "embed.weight" and i.data_type == onnx.TensorProto.FLOAT
        for i in graph.initializer
    )
    assert any(n.op_type == "Gather" for n in graph.node)
    assert ("embed" in result.float_layers) == table_is_float


@pytest.mark.parametrize(
    ("config", "bits"),
    [(WeightOnlyInt4Config(group_size=16), 4), (WeightOnlyInt8Config(group_size=16), 8)],
)
def test_weight_only_packs_linear_weights(tmp_path: Path, config, bits: int):
    torch.manual_seed(0)
    net = TokenNet().eval()
    (ids,) = next(token_batches(8))
    result = quantize(
        net, config, example_inputs=(ids,), input_names=("input_ids",), out_path=tmp_path / "w.onnx"
    )
    graph = onnx.load(str(result.artifact)).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 2  # the two 3-D Linear layers
    # the 2-D head (a Gemm) is stored in its bits behind a DequantizeLinear
    assert result.quantized_layers == 3
    assert all(a.i == bits for n in nbits for a in n.attribute if a.name == "bits")
    packed = sum(
        len(i.raw_data) for i in graph.initializer if i.data_type == onnx.TensorProto.UINT8
    )
    assert packed == (64 * 128 + 128 * 64) * bits // 8  # two 4-bit values per byte at bits=4
    sess = ort.InferenceSession(str(result.artifact), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(sess.run(None, {"input_ids": ids.numpy()})[0])
    with torch.inference_mode():
        want = net(ids)
    assert float((got - want).abs().max()) <= 0.1 * float(want.abs().max())


@pytest.mark.parametrize(
    ("config", "gemm"),
    [
        (WeightOnlyInt8Config(), onnx.TensorProto.INT8),
        (WeightOnlyInt4Config(group_size=16), onnx.TensorProto.INT4),
    ],
)
def test_weight_only_stores_conv_and_gemm_weights_low_bit_and_serves_them_as_float(
    trained, tmp_path: Path, config, gemm
):
    net, data = trained
    float_path = export_onnx(net, data.sample_inputs(4), data.input_names, tmp_path / "f.onnx")
    result = quantize(
        net,
        config,
        example_inputs=data.sample_inputs(4),
        input_names=data.input_names,
        out_path=tmp_path / "w.onnx",
    )
    assert result.quantized_layers == 3 and result.float_layers == []  # 2 convs and the Gemm
    model = onnx.load(str(result.artifact))
    graph = model.graph
    stored = {i.name: i for i in graph.initializer}
    consumer = {i: n.op_type for n in graph.node for i in n.input}
    dequantized = {}
    for dq in (n for n in graph.node if n.op_type == "DequantizeLinear"):
        attrs = {a.name: a.i for a in dq.attribute}
        weight, scale = stored[dq.input[0]], stored[dq.input[1]]
        dequantized[consumer[dq.output[0]]] = dequantized.get(consumer[dq.output[0]], 0) + 1
        if consumer[dq.output[0]] == "Gemm":
            assert weight.data_type == gemm
        else:  # convolutions: int8 in both modes, too few inputs per channel for 4 bits
            assert weight.data_type == onnx.TensorProto.INT8
        if "block_size" in attrs:  # int4: one scale per 16 inputs of each output row
            groups = -(-weight.dims[attrs["axis"]] // 16)
            assert attrs["block_size"] == 16 and groups in scale.dims
        else:
            assert list(scale.dims) == [weight.dims[attrs["axis"]]]  # one per output channel
    assert dequantized == {"Conv": 2, "Gemm": 1}
    assert not any(n.op_type in ("QuantizeLinear", "QLinearConv") for n in graph.node)
    if gemm == onnx.TensorProto.INT4:  # reading int4 takes opset 21
        assert next(o.version for o in model.opset_import if o.domain == "") >= 21
    assert weight_only(result.artifact) and not weight_only(float_path)
    # Served, the weights are dequantized once at load: the optimised graph is float.
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    ort.InferenceSession(str(result.artifact), options, providers=["CPUExecutionProvider"])
    folded = onnx.load(str(tmp_path / "optimised.onnx")).graph
    assert not any(n.op_type == "DequantizeLinear" for n in folded.node)
    assert result.artifact.stat().st_size < 0.5 * float_path.stat().st_size
    assert _plain_session_accuracy(result.artifact, data) >= 95.0


def test_weight_only_with_every_layer_ignored_is_refused_with_the_layers_named(
    trained, tmp_path: Path
):
    net, data = trained
    with pytest.raises(StepError, match=r"none of this model's layers qualified .*stay float"):
        quantize(
            net,
            WeightOnlyInt4Config(ignore=("Conv2d", "Linear")),
            example_inputs=data.sample_inputs(4),
            input_names=data.input_names,
            out_path=tmp_path / "w.onnx",
        )


@pytest.mark.parametrize(
    ("calibration", "message"),
    [([], "calibration set is empty"), ([(torch.full((4, 1, 8, 8), float("nan")),)], "NaN or Inf")],
)
def test_bad_calibration_sets(trained, tmp_path: Path, calibration, message):
    net, data = trained
    with pytest.raises(StepError, match=message):
        quantize(
            net,
            StaticInt8Config(),
            example_inputs=data.sample_inputs(4),
            input_names=data.input_names,
            out_path=tmp_path / "q.onnx",
            calibration=calibration,
        )
    assert not (tmp_path / "q.onnx").exists()


def test_a_model_without_weight_layers_is_refused(tmp_path: Path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.ReLU())
    with pytest.raises(StepError, match="no Conv, Gemm or MatMul layer"):
        quantize(
            net,
            DynamicInt8Config(),
            example_inputs=(torch.randn(2, 3),),
            input_names=("inputs",),
            out_path=tmp_path / "q.onnx",
        )
