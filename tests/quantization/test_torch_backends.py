"""torchao and half-precision modes: quantized in place, close to float, saved and reloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.quantization.tiny import TokenNet, token_batches

from slimkit.errors import RecipeError, StepError
from slimkit.models import build_model, save_model
from slimkit.models.sources import ModelSpec
from slimkit.quantization import (
    Bf16Config,
    DynamicInt8Config,
    Fp16Config,
    WeightOnlyInt8Config,
    parse_quantize_config,
    quantize,
)

ARCH = {"source": "tests.quantization.tiny:TokenNet", "kwargs": {}}


def _quantize(config):
    torch.manual_seed(0)
    net = TokenNet().eval()
    float_net = TokenNet().eval()
    float_net.load_state_dict(net.state_dict())
    (ids,) = next(token_batches(8))
    result = quantize(
        net, config, example_inputs=(ids,), input_names=("input_ids",), out_path=Path("unused.onnx")
    )
    return result, float_net, ids


@pytest.mark.parametrize(
    "config",
    [DynamicInt8Config(backend="torchao"), WeightOnlyInt8Config(backend="torchao", group_size=16)],
)
def test_torchao_quantizes_linears_and_names_what_stays_float(config, tmp_path: Path):
    result, float_net, ids = _quantize(config)
    assert result.runtime == "compile" and result.artifact is None
    assert result.quantized_layers == 3 and result.float_layers == ["embed"]
    assert type(result.module.up.weight).__name__ == "Int8Tensor"
    with torch.inference_mode():
        got, want = result.module(ids), float_net(ids)
    assert float((got - want).abs().max()) <= 0.05 * float(want.abs().max())
    path = save_model(result.module, tmp_path / "q.safetensors", ARCH)
    float_path = save_model(float_net, tmp_path / "f.safetensors", ARCH)
    assert path.stat().st_size < 0.5 * float_path.stat().st_size
    again = build_model(ModelSpec.parse(str(path)))
    assert type(again.up.weight).__name__ == "Int8Tensor"
    with torch.inference_mode():
        assert torch.equal(again(ids), got)


def test_torchao_on_a_model_without_linear_layers_is_refused():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    with pytest.raises(StepError, match=r"quantizes Linear layers, and this model has none .*0"):
        quantize(
            net,
            DynamicInt8Config(backend="torchao"),
            example_inputs=(torch.randn(1, 1, 4, 4),),
            input_names=("x",),
            out_path=Path("unused.onnx"),
        )


@pytest.mark.parametrize(
    ("config", "dtype", "tol"),
    [(Bf16Config(), torch.bfloat16, 0.05), (Fp16Config(), torch.float16, 0.01)],
)
def test_half_precision_halves_the_artifact_and_reloads_in_its_dtype(
    config, dtype, tol, tmp_path: Path
):
    result, float_net, ids = _quantize(config)
    assert result.module.up.weight.dtype == dtype
    with torch.inference_mode():
        got, want = result.module(ids).float(), float_net(ids)
    assert float((got - want).abs().max()) <= tol * float(want.abs().max())
    half = save_model(result.module, tmp_path / "h.safetensors", ARCH).stat().st_size
    full = save_model(float_net, tmp_path / "f.safetensors", ARCH).stat().st_size
    assert half < 0.55 * full
    again = build_model(ModelSpec.parse(str(tmp_path / "h.safetensors")))
    assert again.up.weight.dtype == dtype


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"mode": "weight-only-int4", "backend": "torchao"},
            r"weight-only-int4 cannot run on torchao; it runs on: onnxruntime",
        ),
        ({"mode": "static-int8", "backend": "torch"}, r"static-int8 cannot run on torch"),
        (
            {"mode": "bf16", "backend": "onnxruntime"},
            r"bf16 cannot run on onnxruntime; it runs on: openvino, torch",
        ),
        ({"mode": "weight-only-int4", "group_size": 48}, r"group_size must be a power of two"),
    ],
)
def test_modes_their_backends_cannot_run_are_recipe_errors(data, message):
    with pytest.raises(RecipeError, match=message):
        parse_quantize_config(data, "steps[0].quantize")
