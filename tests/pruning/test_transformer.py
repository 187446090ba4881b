"""Heads and FFN neurons removed from a BERT-style encoder: smaller, runnable, reloadable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import slimkit
from slimkit.errors import StepError
from slimkit.evaluation import count_macs, count_params
from slimkit.export import export_onnx
from slimkit.models import ModelSpec, build_model, save_model
from slimkit.pruning import FfnConfig, HeadsConfig, prune

ARCH = {"source": "tiny_models:tiny_bert", "kwargs": {"num_classes": 3}}


@pytest.fixture
def bert(fixtures_on_path: Path):
    torch.manual_seed(0)
    net = build_model(ModelSpec.parse("tiny_models:tiny_bert")).eval()
    ids = torch.randint(0, 50, (2, 12))
    return net, (ids, torch.ones_like(ids))


def _layer(net, i: int):
    return net.encoder.encoder.layer[i]


def test_heads_keeps_the_most_important_and_shrinks_every_projection(bert):
    net, inputs = bert
    with torch.no_grad():  # make head 2 of layer 0 clearly the largest
        _layer(net, 0).attention.self.query.weight[16:24] *= 10
    pruned = prune(net, HeadsConfig(ratio=0.5))
    for i in range(2):
        attn = _layer(pruned, i).attention
        assert [
            attn.self.query.out_features,
            attn.self.key.out_features,
            attn.self.value.out_features,
            attn.output.dense.in_features,
        ] == [16, 16, 16, 16]
        assert attn.self.num_attention_heads == 2 and attn.self.all_head_size == 16
    kept = _layer(pruned, 0).attention.self.query.weight
    assert any(
        torch.equal(kept[r : r + 8], _layer(net, 0).attention.self.query.weight[16:24])
        for r in (0, 8)
    )
    assert pruned(*inputs).shape == (2, 3)
    assert count_macs(pruned, inputs) < count_macs(net, inputs)


def test_ffn_removes_neurons_with_round_to(bert):
    net, inputs = bert
    pruned = prune(net, FfnConfig(ratio=0.6, round_to=8))
    # 64 neurons, 60% removed leaves 26 -> rounded down to a multiple of 8: 24
    assert [_layer(pruned, i).intermediate.dense.out_features for i in range(2)] == [24, 24]
    assert _layer(pruned, 0).output.dense.in_features == 24
    assert count_params(pruned) == count_params(net) - 2 * 40 * (32 + 1 + 32)
    assert pruned(*inputs).shape == (2, 3)


@pytest.mark.slow
def test_pruned_encoder_reloads_identically_and_exports(bert, tmp_path: Path):
    net, inputs = bert
    pruned = prune(prune(net, HeadsConfig(ratio=0.5)), FfnConfig(ratio=0.5))
    path = save_model(pruned, tmp_path / "p.safetensors", ARCH)
    again = build_model(ModelSpec.parse(str(path)))
    assert _layer(again, 1).attention.self.num_attention_heads == 2
    torch.testing.assert_close(again(*inputs), pruned(*inputs), rtol=0, atol=0)
    onnx_path = export_onnx(pruned, inputs, ("input_ids", "attention_mask"), tmp_path / "p.onnx")
    assert onnx_path.stat().st_size > 0


def test_transformer_methods_refuse_other_models():
    net = slimkit.build_model("small-cnn", num_classes=3, in_channels=1)
    with pytest.raises(StepError, match="method: heads needs a Hugging Face transformer; SmallCNN"):
        prune(net, HeadsConfig(ratio=0.5))
    with pytest.raises(StepError, match=r"method: ffn needs .* \(families: albert, bert, "):
        prune(net, FfnConfig(ratio=0.5))
