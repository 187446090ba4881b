"""Evaluation figures checked against values computed by hand on a small net."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from slimkit.evaluation import count_macs, count_nonzero, count_params, measure_latency
from slimkit.evaluation.macs import layer_macs
from slimkit.evaluation.metrics import accuracy, macro_f1
from slimkit.models.arch import Arch


def _net() -> nn.Sequential:
    # conv 1->4, 3x3, no padding, on 1x10x10 -> 4x8x8; flatten 256 -> linear 256->3
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))


def test_params_nonzeros_and_macs_match_hand_counts():
    net = _net()
    assert count_params(net) == (4 * 9 + 4) + (256 * 3 + 3)
    with torch.no_grad():
        net[0].weight[:2].zero_()  # 18 weights
        net[3].bias.zero_()  # 3 biases
    assert count_nonzero(net) == count_params(net) - 18 - 3
    # MACs per example: conv 4 out-ch * 8*8 positions * 9 taps; linear 256*3
    x = torch.randn(5, 1, 10, 10)
    assert count_macs(net, (x,)) == 4 * 64 * 9 + 256 * 3
    assert layer_macs(net, (x,)) == {"0": 4 * 64 * 9, "3": 256 * 3}


def test_tied_parameters_are_counted_once():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    assert count_params(nn.ModuleList([emb, head])) == 40


def test_attention_matmuls_are_counted():
    attn = nn.MultiheadAttention(8, 2, batch_first=True)

    class Wrap(nn.Module):
        def forward(self, x):
            return attn(x, x, x, need_weights=False)[0]

    seq, d = 6, 8
    # in-projection 3*d*d per token, out-projection d*d per token, scores and mixing seq*seq*d each
    expected = seq * 3 * d * d + seq * d * d + 2 * seq * seq * d
    assert count_macs(Wrap(), (torch.randn(1, seq, d),)) == expected


def test_accuracy_and_macro_f1_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 1])
    assert accuracy(logits, labels) == 50.0
    # class 0: tp 1, fp 2, fn 0 -> f1 2/4; class 1: tp 1, fp 0, fn 2 -> f1 2/4
    assert macro_f1(logits, labels) == pytest.approx(50.0)


def test_latency_is_interleaved_each_turn_led_by_an_untimed_call():
    calls: list[str] = []

    def engine(name: str):
        return lambda inputs: calls.append(name)

    stats = measure_latency(
        {"a": engine("a"), "b": engine("b")}, (torch.zeros(4, 2),), warmup=2, rounds=4, per_round=3
    )
    turns = calls[4:]  # after 2 warm-up calls each
    # order rotated each round; 4 calls a turn, of which 3 are timed
    assert turns == [n for order in ("ab", "ba", "ab", "ba") for n in order for _ in range(4)]
    for s in stats.values():
        assert s.samples == 12 and s.batch_size == 4 and 0 < s.p50 <= s.p90
        assert s.throughput == pytest.approx(4 / (s.p50 / 1000))


def test_size_on_disk_is_the_artifact_file(tmp_path: Path):
    import slimkit

    data = slimkit.load_data("mnist5k")
    net = slimkit.build_model("small-cnn", num_classes=10, in_channels=1, width=4, depth=2)
    figures = slimkit.evaluate(
        net,
        data,
        runtime="eager",
        batch_size=2,
        rounds=2,
        arch=Arch(source="small-cnn", kwargs={"width": 4, "depth": 2}),
    )
    # safetensors: 8-byte length + JSON header + fp32 tensors (incl. BN buffers)
    tensor_bytes = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    assert tensor_bytes < figures["size_bytes"] < tensor_bytes + 4096
    assert figures["params"] == count_params(net) and figures["batch_size"] == 2
    assert figures["macs"] == count_macs(net, data.sample_inputs(1))


def test_nonzero_counts_torchao_quantized_weights_by_what_they_represent():
    import copy

    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    from slimkit.evaluation.size import count_nonzero, count_params

    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 4))
    with torch.no_grad():
        net[0].weight[:, :32] = 0
    quantized = copy.deepcopy(net)
    quantize_(quantized, Int8DynamicActivationInt8WeightConfig())
    assert count_params(quantized) == count_params(net) == 64 * 64 + 64 + 64 * 4 + 4
    # the pruned half stays zero; int8 rounding may zero a few more small weights
    assert count_nonzero(net) - 16 <= count_nonzero(quantized) <= count_nonzero(net)


def test_evaluate_takes_what_quantize_returns_and_serves_it_on_its_runtime(
    blobs_npz: Path, fixtures_on_path: Path
):
    """evaluate(quantized, data, backend="onnxruntime") failed: QuantizedModel has no .eval."""
    import slimkit
    from slimkit.errors import StepError
    from slimkit.quantization import StaticInt8Config

    data = slimkit.load_data(str(blobs_npz))
    net = slimkit.build_model("tiny_models:tiny_cnn", num_classes=3, in_channels=1)
    int8 = slimkit.quantize(net, StaticInt8Config(calibration_samples=32), data)
    assert int8.runtime == "onnxruntime" and int8.artifact is not None
    figures = slimkit.evaluate(int8, data, rounds=2)
    assert figures["runtime"] == "onnxruntime"
    assert figures["size_bytes"] == int8.artifact.stat().st_size
    assert slimkit.evaluate(int8, data, runtime="onnxruntime", rounds=2)["runtime"] == "onnxruntime"
    with pytest.raises(StepError, match="eager cannot run: serve it on onnxruntime"):
        slimkit.evaluate(int8, data, runtime="eager", rounds=2)


def test_quantize_without_data_or_example_inputs_says_what_it_needs(fixtures_on_path: Path):
    import slimkit
    from slimkit.errors import StepError
    from slimkit.quantization import DynamicInt8Config

    net = slimkit.build_model("tiny_models:tiny_cnn", num_classes=3, in_channels=1)
    with pytest.raises(StepError, match=r"pass the data set \(quantize\(model, config, data\)\)"):
        slimkit.quantize(net, DynamicInt8Config())
