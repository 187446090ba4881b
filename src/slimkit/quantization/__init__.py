"""Quantization: ``quantize(model, config, ...)`` with one config type per mode.

Every mode runs on a real low-precision runtime and comes back as a :class:`QuantizedModel`
that says where it runs and which layers stayed float.

>>> from slimkit.quantization import StaticInt8Config, quantize
>>> q = quantize(net, StaticInt8Config(), data)  # doctest: +SKIP
>>> q.runtime, q.float_layers  # doctest: +SKIP
('onnxruntime', [])
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.data.bundle import DataBundle
from slimkit.errors import RecipeError, StepError
from slimkit.models.graph import OnnxGraph
from slimkit.quantization import backends
from slimkit.quantization.backends import CAPABILITIES, backends_for, register_quantizer
from slimkit.quantization.configs import (
    QUANT_MODES,
    Bf16Config,
    DynamicInt8Config,
    Estimator,
    Fp16Config,
    IntType,
    QatConfig,
    QuantBackend,
    QuantizeConfig,
    StaticInt8Config,
    WeightOnlyInt4Config,
    WeightOnlyInt8Config,
)
from slimkit.quantization.result import QuantizedModel


def _runs_on(config: QuantizeConfig) -> str:
    return ", ".join(str(b) for b in backends_for(config.mode))


def quantize(
    model: nn.Module,
    config: QuantizeConfig,
    data: DataBundle | None = None,
    *,
    example_inputs: tuple[torch.Tensor, ...] | None = None,
    input_names: tuple[str, ...] | None = None,
    out_path: str | Path | None = None,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
    train_loop: Callable[[nn.Module], None] | None = None,
    check_inputs: tuple[torch.Tensor, ...] | None = None,
) -> QuantizedModel:
    """Quantize ``model`` as ``config`` says; :func:`slimkit.evaluate` measures the result.

    Given ``data`` (a data set from :func:`slimkit.load_data`), everything else is taken from
    it as the ``quantize`` recipe step does: traced and held-out examples, calibration batches,
    QAT's training. Without it, pass ``example_inputs`` and ``input_names``, plus
    ``calibration`` (batches of input tuples, for static int8) or ``train_loop(model)`` (for
    QAT): slimkit never owns the data format or the loop. An exported graph is verified on
    ``check_inputs`` (held-out examples, default ``example_inputs``) at the tolerance of the
    mode's precision.

    ONNX and PT2E backends write their artifact at ``out_path`` (default: a new temporary
    folder) and leave ``model`` untouched; ``quantize_`` backends quantize ``model`` in place.
    ``backend: auto`` measures every candidate: use the ``quantize`` recipe step.

    >>> import slimkit
    >>> from slimkit.quantization import DynamicInt8Config
    >>> data = slimkit.load_data("mnist5k")
    >>> net = slimkit.build_model("resnet-mini", num_classes=10, in_channels=1)
    >>> int8 = slimkit.quantize(net, DynamicInt8Config(), data)
    >>> int8.runtime
    'onnxruntime'
    """
    if config.backend is QuantBackend.AUTO:
        raise StepError(
            "backend: auto measures every candidate on data; call "
            "slimkit.quantization.auto.choose_backend, or use the quantize recipe step."
        )
    handler = backends.handler(config.backend, config.mode)
    if handler is None:
        raise StepError(
            f"{config.mode} cannot run on backend {config.backend}; it runs on: {_runs_on(config)}."
        )
    if isinstance(model, OnnxGraph) and not CAPABILITIES[config.backend].takes_graph:
        graphs = [c.label for c in CAPABILITIES.values() if c.takes_graph]
        raise StepError(
            f"{config.backend} quantizes PyTorch models, and {model.path} is an ONNX graph: "
            f"use backend {' or '.join(graphs)}, or start from the PyTorch model."
        )
    if data is not None:
        from slimkit.quantization.inputs import inputs_from

        given = inputs_from(data, config, model)
        example_inputs = example_inputs or given.example_inputs
        input_names = input_names or given.input_names
        check_inputs = check_inputs or given.check_inputs
        calibration = calibration if calibration is not None else given.calibration
        train_loop = train_loop or given.train_loop
    if example_inputs is None or input_names is None:
        raise StepError(
            "quantize needs to trace the model: pass the data set (quantize(model, config, "
            "data)) or example_inputs= and input_names=."
        )
    if out_path is None:
        out_path = Path(tempfile.mkdtemp(prefix="slimkit-quantized-")) / "model"
    return handler(
        model,
        config,
        example_inputs=example_inputs,
        input_names=input_names,
        out_path=Path(out_path),
        calibration=calibration,
        train_loop=train_loop,
        check_inputs=check_inputs,
    )


def parse_quantize_config(data: dict[str, Any], where: str) -> QuantizeConfig:
    """Pick the config class by ``mode``, validate ``data``, and check the backend can run it."""
    mode = str(data.get("mode"))
    if mode not in QUANT_MODES:
        raise RecipeError(f"'{where}.mode': " + QUANT_MODES.unknown_message(mode))
    config = QUANT_MODES.get(mode).from_dict(data, where)
    runs = config.backend is QuantBackend.AUTO or mode in CAPABILITIES[config.backend].handlers
    if not runs:
        raise RecipeError(
            f"'{where}.backend': {mode} cannot run on {config.backend}; "
            f"it runs on: {_runs_on(config)}."
        )
    return config


__all__ = [
    "QUANT_MODES",
    "Bf16Config",
    "DynamicInt8Config",
    "Estimator",
    "Fp16Config",
    "IntType",
    "QatConfig",
    "QuantBackend",
    "QuantizeConfig",
    "QuantizedModel",
    "StaticInt8Config",
    "WeightOnlyInt4Config",
    "WeightOnlyInt8Config",
    "backends_for",
    "parse_quantize_config",
    "quantize",
    "register_quantizer",
]
