"""Quantization: ``quantize(model, config, ...)`` with one config type per mode.

Every mode runs on a real low-precision runtime and comes back as a :class:`QuantizedModel`
that says where it runs and which layers stayed float.

>>> from slimkit.quantization import StaticInt8Config, quantize
>>> q = quantize(net, StaticInt8Config(), example_inputs=(x,), input_names=("pixels",),
...              out_path="q.onnx", calibration=batches)  # doctest: +SKIP
>>> q.runtime, q.float_layers  # doctest: +SKIP
('onnxruntime', [])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.errors import RecipeError, StepError
from slimkit.quantization.configs import (
    QUANT_MODES,
    Bf16Config,
    DynamicInt8Config,
    Estimator,
    Fp16Config,
    IntType,
    QuantBackend,
    QuantizeConfig,
    StaticInt8Config,
    WeightOnlyInt4Config,
    WeightOnlyInt8Config,
)
from slimkit.quantization.half import to_half
from slimkit.quantization.onnxruntime import (
    quantize_dynamic_int8,
    quantize_static_int8,
    quantize_weight_only,
)
from slimkit.quantization.result import QuantizedModel
from slimkit.quantization.torchao import quantize_torchao

Handler = Callable[..., QuantizedModel]

# (config type, backend) -> handler; a new mode or backend adds a row here, not a branch.
_HANDLERS: dict[tuple[type[QuantizeConfig], QuantBackend], Handler] = {
    (StaticInt8Config, QuantBackend.ONNXRUNTIME): quantize_static_int8,
    (DynamicInt8Config, QuantBackend.ONNXRUNTIME): quantize_dynamic_int8,
    (DynamicInt8Config, QuantBackend.TORCHAO): quantize_torchao,
    (WeightOnlyInt8Config, QuantBackend.ONNXRUNTIME): quantize_weight_only,
    (WeightOnlyInt8Config, QuantBackend.TORCHAO): quantize_torchao,
    (WeightOnlyInt4Config, QuantBackend.ONNXRUNTIME): quantize_weight_only,
    (Fp16Config, QuantBackend.TORCH): to_half,
    (Bf16Config, QuantBackend.TORCH): to_half,
}


def backends_for(config_type: type[QuantizeConfig]) -> list[str]:
    """The backends that can run a mode."""
    return [str(b) for (c, b) in _HANDLERS if c is config_type]


def quantize(
    model: nn.Module,
    config: QuantizeConfig,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    out_path: str | Path,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
) -> QuantizedModel:
    """Quantize ``model`` as ``config`` says.

    ONNX backends write their graph to ``out_path`` and leave ``model`` untouched; torch backends
    quantize ``model`` in place. ``calibration`` yields input batches (tuples of tensors), as a
    ``forward_loop`` would feed the model: slimkit never owns the data format.
    """
    handler = _HANDLERS.get((type(config), config.backend))
    if handler is None:
        raise StepError(
            f"{config.mode} cannot run on backend {config.backend}; "
            f"it runs on: {', '.join(backends_for(type(config)))}."
        )
    return handler(
        model,
        config,
        example_inputs=example_inputs,
        input_names=input_names,
        out_path=Path(out_path),
        calibration=calibration,
    )


def parse_quantize_config(data: dict[str, Any], where: str) -> QuantizeConfig:
    """Pick the config class by ``mode``, validate ``data``, and check the backend can run it."""
    mode = str(data.get("mode"))
    if mode not in QUANT_MODES:
        raise RecipeError(f"'{where}.mode': " + QUANT_MODES.unknown_message(mode))
    config = QUANT_MODES.get(mode).from_dict(data, where)
    if (type(config), config.backend) not in _HANDLERS:
        raise RecipeError(
            f"'{where}.backend': {mode} cannot run on {config.backend}; "
            f"it runs on: {', '.join(backends_for(type(config)))}."
        )
    return config


__all__ = [
    "QUANT_MODES",
    "Bf16Config",
    "DynamicInt8Config",
    "Estimator",
    "Fp16Config",
    "IntType",
    "QuantBackend",
    "QuantizeConfig",
    "QuantizedModel",
    "StaticInt8Config",
    "WeightOnlyInt4Config",
    "WeightOnlyInt8Config",
    "backends_for",
    "parse_quantize_config",
    "quantize",
]
