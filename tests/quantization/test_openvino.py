"""NNCF on OpenVINO: int8 and weight-compressed IRs, verified, as accurate, loadable by a plain
OpenVINO client, and one more candidate that backend: auto measures."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch
from tests.quantization.tiny import TokenNet, token_batches

import slimkit
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.export.onnx import TOLERANCES
from slimkit.quantization import (
    Bf16Config,
    StaticInt8Config,
    WeightOnlyInt4Config,
    WeightOnlyInt8Config,
    quantize,
)


def _plain_openvino_accuracy(xml: Path, data) -> float:
    """Accuracy through a plain OpenVINO compiled model, as a user without slimkit loads it."""
    compiled = ov.Core().compile_model(str(xml), "CPU")
    return accuracy(
        *predict(
            lambda x: torch.from_numpy(np.array(compiled(x[0].numpy())[0])),
            data.test.batches(64),
        )
    )


def test_static_int8_quantizes_every_layer_and_a_plain_client_scores_it(trained, tmp_path):
    net, data = trained
    float_accuracy = accuracy(*predict(lambda x: net(*x), data.test.batches(64)))
    result = quantize(
        copy.deepcopy(net),
        StaticInt8Config(backend="openvino", calibration_samples=64, recover=False),
        data,
        out_path=tmp_path / "q.onnx",
    )
    assert result.runtime == "openvino" and result.artifact == tmp_path / "q.xml"
    assert result.quantized_layers == 3 and result.float_layers == []
    assert (tmp_path / "q.bin").is_file()
    assert result.agreement is not None
    result.agreement.check("int8")
    ops = {op.get_type_name() for op in ov.Core().read_model(str(result.artifact)).get_ops()}
    assert "FakeQuantize" in ops  # int8 on the CPU plugin: quantize / dequantize pairs it fuses
    assert _plain_openvino_accuracy(result.artifact, data) >= float_accuracy - 2.0


def test_ignore_keeps_the_named_pytorch_layer_float(trained, tmp_path):
    net, data = trained
    result = quantize(
        copy.deepcopy(net),
        StaticInt8Config(backend="openvino", calibration_samples=32, ignore=["8"], recover=False),
        data,
        out_path=tmp_path / "q.onnx",
    )
    assert result.float_layers == ["8"] and result.quantized_layers == 2


@pytest.mark.parametrize(
    ("config", "element"),
    [
        (WeightOnlyInt8Config(backend="openvino", recover=False), ov.Type.u8),
        (WeightOnlyInt4Config(backend="openvino", group_size=16, recover=False), ov.Type.i4),
    ],
)
def test_weight_compression_stores_low_bit_weights(config, element, tmp_path):
    net = TokenNet().eval()
    batches = list(token_batches(4))
    result = quantize(
        net,
        config,
        example_inputs=batches[0],
        input_names=("input_ids",),
        check_inputs=batches[1],
        out_path=tmp_path / "w.onnx",
    )
    model = ov.Core().read_model(str(result.artifact))
    types = {c.get_element_type() for c in model.get_ops() if c.get_type_name() == "Constant"}
    assert element in types
    assert result.quantized_layers == 3 and result.float_layers == []
    assert result.agreement is not None
    result.agreement.check(config.precision)
    float_ir = sum(p.numel() for p in net.parameters()) * 4
    assert result.artifact.with_suffix(".bin").stat().st_size < float_ir / 2.5


def test_bf16_is_served_in_bf16_within_its_tolerance(trained, tmp_path):
    net, data = trained
    result = quantize(net, Bf16Config(backend="openvino"), data, out_path=tmp_path / "h.onnx")
    model = ov.Core().read_model(str(result.artifact))
    assert str(model.get_rt_info(["slimkit", "inference_precision"]).astype(str)) == "bf16"
    assert result.agreement is not None
    assert result.agreement.max_diff <= TOLERANCES["bf16"].bound(result.agreement.scale)
    figures = slimkit.evaluate(result, data, rounds=2)
    assert figures["runtime"] == "openvino" and figures["size_bytes"] > 0


def test_a_users_onnx_graph_is_quantized_by_nncf_too(trained, tmp_path):
    from slimkit.export import export_onnx

    net, data = trained
    export_onnx(net, data.sample_inputs(2), data.input_names, tmp_path / "cnn.onnx")
    graph = slimkit.build_model(str(tmp_path / "cnn.onnx"))
    config = StaticInt8Config(backend="openvino", calibration_samples=32, recover=False)
    result = quantize(graph, config, data, out_path=tmp_path / "q.onnx")
    assert result.quantized_layers == 3
    assert slimkit.evaluate(result, data, rounds=2)["runtime"] == "openvino"


def test_model_type_is_nncfs_option_and_steers_its_tuning(trained, tmp_path):
    from slimkit.errors import RecipeError
    from slimkit.quantization import parse_quantize_config

    with pytest.raises(RecipeError, match="model_type is an option of openvino"):
        parse_quantize_config({"mode": "static-int8", "model_type": "transformer"}, "q")
    net, data = trained

    def activation_ranges(model_type: str) -> list[tuple[float, float]]:
        config = StaticInt8Config(
            backend="openvino", calibration_samples=32, model_type=model_type, recover=False
        )
        path = tmp_path / f"{model_type}.onnx"
        result = quantize(copy.deepcopy(net), config, data, out_path=path)
        assert result.quantized_layers == 3
        model = ov.Core().read_model(str(result.artifact))
        return [
            (
                float(op.input_value(1).get_node().get_data().min()),
                float(op.input_value(2).get_node().get_data().max()),
            )
            for op in model.get_ordered_ops()
            if op.get_type_name() == "FakeQuantize"
            and op.input_value(0).get_node().get_type_name() != "Constant"
        ]

    # the transformer preset quantizes activations asymmetrically, the CNN one symmetrically:
    # the option reaches NNCF and changes the ranges it sets
    cnn, transformer = activation_ranges("cnn"), activation_ranges("transformer")
    assert cnn and transformer and cnn != transformer


@pytest.mark.slow
def test_nncfs_accuracy_control_is_the_ladders_rung_for_openvino(blobs_npz, tmp_path):
    """On a net whose last layer's input has one channel 1000x the others, NNCF's int8 loses
    points; the ladder's accuracy-control rung returns layers to float until the budget holds."""
    from tests.helpers import outlier_net

    from slimkit.quantization._candidates import build, val_accuracy
    from slimkit.quantization.recovery import recover

    net, data = outlier_net(blobs_npz)
    config = StaticInt8Config(backend="openvino", calibration_samples=128, max_accuracy_drop=0.5)
    calibration = [inputs for inputs, _ in data.calibration(128).batches(32)]
    first = build(net, config, data, tmp_path / "q.onnx", calibration)
    result, _, log = recover(
        net, config, first, data=data, out_path=tmp_path / "q.onnx", batch_size=2,
        calibration=calibration,
    )  # fmt: skip
    start = float(log[0].split()[1].rstrip("%"))
    float_accuracy = val_accuracy(lambda x: net(*x), data)
    assert float_accuracy - start > 0.5, "the model must miss the budget"
    assert any(line.startswith("error corrections: openvino") for line in log)
    controlled = [line for line in log if line.startswith("openvino (NNCF) accuracy control")]
    assert controlled, log
    assert float_accuracy - float(controlled[0].split(": ")[1].split("%")[0]) <= 0.5
    assert result.runtime == "openvino" and result.float_layers


@pytest.mark.slow
def test_int4_embeddings_store_the_token_table_in_4_bits_and_ignore_keeps_it(tmp_path):
    from slimkit.errors import RecipeError
    from slimkit.quantization import parse_quantize_config

    with pytest.raises(RecipeError, match="int4_embeddings is an option of openvino"):
        parse_quantize_config({"mode": "static-int8", "int4_embeddings": True}, "q")
    torch.manual_seed(0)
    net = TokenNet(vocab=50, dim=64).eval()
    batches = list(token_batches(4))

    def run(name: str, **options) -> tuple[dict, int]:
        config = StaticInt8Config(backend="openvino", recover=False, **options)
        result = quantize(
            copy.deepcopy(net),
            config,
            example_inputs=batches[0],
            input_names=("input_ids",),
            calibration=batches,
            check_inputs=batches[1],
            out_path=tmp_path / f"{name}.onnx",
        )
        model = ov.Core().read_model(str(result.artifact))
        entries: dict = {}
        for c in (op for op in model.get_ops() if op.get_type_name() == "Constant"):
            kind = c.get_element_type()
            entries[kind] = entries.get(kind, 0) + int(np.prod(c.get_output_shape(0)))
        assert result.quantized_layers == 3  # the Linear layers are int8 either way
        return entries, result.artifact.with_suffix(".bin").stat().st_size

    plain, plain_bytes = run("plain")
    int4, int4_bytes = run("int4", int4_embeddings=True)
    kept, _ = run("kept", int4_embeddings=True, ignore=["embed"])
    table = 50 * 64
    assert int4.get(ov.Type.u4) == table + 50  # the table and a zero point per 64-wide row
    assert ov.Type.u4 not in plain and ov.Type.u4 not in kept
    assert int4_bytes < plain_bytes - table / 4  # half a byte per entry saved, less the scales
