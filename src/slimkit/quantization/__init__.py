"""Quantization: ``quantize(model, config, ...)`` with one config type per mode.

Every mode runs on a real int8 runtime and returns the artifact that runtime loads.
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
    DynamicInt8Config,
    Estimator,
    IntType,
    QuantBackend,
    QuantizeConfig,
    StaticInt8Config,
)
from slimkit.quantization.onnxruntime import quantize_onnx

# (config type, backend) -> handler; a new mode or backend adds a row here, not a branch.
_HANDLERS: dict[tuple[type[QuantizeConfig], QuantBackend], Callable[..., Path]] = {
    (StaticInt8Config, QuantBackend.ONNXRUNTIME): quantize_onnx,
    (DynamicInt8Config, QuantBackend.ONNXRUNTIME): quantize_onnx,
}


def quantize(
    model: nn.Module,
    config: QuantizeConfig,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    out_path: str | Path,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
) -> Path:
    """Quantize ``model`` as ``config`` says; write and return the backend's artifact.

    ``calibration`` yields input batches (tuples of tensors), as a ``forward_loop`` would feed
    the model: slimkit never owns the data format.
    """
    handler = _HANDLERS.get((type(config), config.backend))
    if handler is None:
        raise StepError(f"{config.mode} has no {config.backend} backend yet.")
    return handler(
        model,
        config,
        example_inputs=example_inputs,
        input_names=input_names,
        out_path=Path(out_path),
        calibration=calibration,
    )


def parse_quantize_config(data: dict[str, Any], where: str) -> QuantizeConfig:
    """Pick the config class by ``mode`` and validate ``data`` against it."""
    mode = str(data.get("mode"))
    if mode not in QUANT_MODES:
        raise RecipeError(f"'{where}.mode': " + QUANT_MODES.unknown_message(mode))
    return QUANT_MODES.get(mode).from_dict(data, where)


__all__ = [
    "QUANT_MODES",
    "DynamicInt8Config",
    "Estimator",
    "IntType",
    "QuantBackend",
    "QuantizeConfig",
    "StaticInt8Config",
    "parse_quantize_config",
    "quantize",
]
