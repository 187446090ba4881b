"""Quantization with torchao's ``quantize_`` configs, served by torch.compile.

torchao's int8 tensor subclasses are written to be compiled: inductor fuses the per-token
activation quantization into the int8 matmul, where eager mode dispatches each piece.

torchao's configs target ``nn.Linear`` only: convolutions, embeddings and recurrent layers stay
float, and the result names them, so a CNN never comes back silently unquantized.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torchao.quantization import (
    Int8DynamicActivationInt8WeightConfig,
    Int8WeightOnlyConfig,
    quantize_,
)
from torchao.quantization.granularity import PerGroup

from slimkit.errors import StepError
from slimkit.quantization.configs import DynamicInt8Config, QuantizeConfig, WeightOnlyInt8Config
from slimkit.quantization.coverage import ignored_layers, torch_linear_coverage
from slimkit.quantization.result import QuantizedModel


def _torchao_config(config: QuantizeConfig) -> Any:
    if isinstance(config, DynamicInt8Config):
        return Int8DynamicActivationInt8WeightConfig()  # per-row weights, per-token activations
    if isinstance(config, WeightOnlyInt8Config):
        return Int8WeightOnlyConfig(granularity=PerGroup(config.group_size))
    raise StepError(f"{config.mode} has no torchao backend; use backend: onnxruntime.")


def quantize_torchao(model: nn.Module, config: QuantizeConfig, **_: Any) -> QuantizedModel:
    """Quantize the Linear layers of ``model`` in place; name every weight layer left float."""
    linears, others = torch_linear_coverage(model)
    if not linears:
        raise StepError(
            f"torchao's {config.mode} quantizes Linear layers, and this model has none "
            f"({len(others)} other weight layers, e.g. {', '.join(others[:3]) or 'none'}). "
            "Use backend: onnxruntime, which also quantizes convolutions."
        )
    keep = set(ignored_layers(model, config.ignore))
    quantize_(
        model,
        _torchao_config(config),
        filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and fqn not in keep,
    )
    quantized = [n for n in linears if n not in keep]
    return QuantizedModel(model, "compile", len(quantized), [*others, *sorted(keep)])
