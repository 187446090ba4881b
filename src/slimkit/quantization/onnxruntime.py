"""int8 quantization with ONNX Runtime's quantization tool (QDQ graphs, CPU kernels)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from slimkit._io import atomic_path
from slimkit.errors import StepError
from slimkit.export.onnx import export_onnx, strip_metadata, verify_onnx
from slimkit.quantization.configs import DynamicInt8Config, Estimator, IntType, StaticInt8Config

log = logging.getLogger(__name__)

_METHODS = {
    Estimator.MINMAX: CalibrationMethod.MinMax,
    Estimator.PERCENTILE: CalibrationMethod.Percentile,
    Estimator.ENTROPY: CalibrationMethod.Entropy,
}
_TYPES = {IntType.INT8: QuantType.QInt8, IntType.UINT8: QuantType.QUInt8}

# An int8 model is verified to stay near the float one: max |logit difference| within this share
# of the largest float logit. A broken graph lands far outside; honest quantization noise inside.
INT8_RELATIVE_TOLERANCE = 0.25


class _Reader(CalibrationDataReader):
    def __init__(self, batches: Iterable[tuple[torch.Tensor, ...]], names: tuple[str, ...]):
        self._it: Iterator[tuple[torch.Tensor, ...]] = iter(batches)
        self._names = names

    def get_next(self) -> dict[str, Any] | None:
        batch = next(self._it, None)
        if batch is None:
            return None
        return {n: x.numpy() for n, x in zip(self._names, batch, strict=True)}


def _float_graph(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    workdir: Path,
) -> Path:
    exported = export_onnx(model, example_inputs, input_names, workdir / "float.onnx")
    prepared = workdir / "prepared.onnx"
    # Shape inference and graph optimisation (BN folded into conv, etc.) before quantizing,
    # as ONNX Runtime's quantization guide prescribes.
    quant_pre_process(str(exported), str(prepared))
    return prepared


def quantize_onnx(
    model: nn.Module,
    config: StaticInt8Config | DynamicInt8Config,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    out_path: Path,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
) -> Path:
    """Export ``model``, quantize it to int8 ONNX at ``out_path``, verify it, return the path."""
    with tempfile.TemporaryDirectory(prefix="slimkit-q-") as tmp:
        prepared = _float_graph(model, example_inputs, input_names, Path(tmp))
        with atomic_path(out_path) as target:
            if isinstance(config, StaticInt8Config):
                if calibration is None:
                    raise StepError("static-int8 needs calibration batches.")
                quantize_static(
                    str(prepared),
                    str(target),
                    _Reader(calibration, input_names),
                    quant_format=QuantFormat.QDQ,
                    per_channel=config.per_channel,
                    activation_type=_TYPES[config.activations],
                    weight_type=QuantType.QInt8,
                    calibrate_method=_METHODS[config.estimator],
                    extra_options={
                        "CalibPercentile": config.percentile,
                        "ActivationSymmetric": config.activations is IntType.INT8,
                    },
                )
            else:
                quantize_dynamic(
                    str(prepared),
                    str(target),
                    per_channel=config.per_channel,
                    weight_type=QuantType.QInt8,
                )
            strip_metadata(target)
            with torch.inference_mode():
                scale = float(model(*example_inputs).abs().max())
            diff = verify_onnx(
                target, model, example_inputs, input_names, INT8_RELATIVE_TOLERANCE * scale + 1e-3
            )
            log.info("int8 graph verified: max |logit diff| %.4f (scale %.2f)", diff, scale)
    return out_path
