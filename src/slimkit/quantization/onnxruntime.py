"""int8 and 4-bit quantization with ONNX Runtime's quantization tools, served by ONNX Runtime.

static-int8 and dynamic-int8 write QDQ / integer-op graphs; the weight-only modes replace each
MatMul by ``MatMulNBits``, which stores two 4-bit weights per byte with group-wise scales and has
CPU kernels. Every graph is verified against the float model before it is returned.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.matmul_nbits_quantizer import (
    DefaultWeightOnlyQuantConfig,
    MatMulNBitsQuantizer,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from slimkit._io import atomic_path
from slimkit.errors import StepError
from slimkit.export.onnx import compare_onnx, export_onnx, tidy_onnx
from slimkit.quantization.calibration import check_calibration
from slimkit.quantization.configs import (
    DynamicInt8Config,
    Estimator,
    IntType,
    QuantizeConfig,
    StaticInt8Config,
    WeightOnlyConfig,
    WeightOnlyInt4Config,
)
from slimkit.quantization.coverage import (
    ignored_layers,
    onnx_float_layers,
    onnx_nodes_for,
    onnx_weight_layers,
)
from slimkit.quantization.result import QuantizedModel

log = logging.getLogger(__name__)

_METHODS = {
    Estimator.MINMAX: CalibrationMethod.MinMax,
    Estimator.PERCENTILE: CalibrationMethod.Percentile,
    Estimator.ENTROPY: CalibrationMethod.Entropy,
}
_TYPES = {IntType.INT8: QuantType.QInt8, IntType.UINT8: QuantType.QUInt8}


class _Reader(CalibrationDataReader):
    def __init__(self, batches: Iterable[tuple[torch.Tensor, ...]], names: tuple[str, ...]):
        self._it: Iterator[tuple[torch.Tensor, ...]] = iter(batches)
        self._names = names

    def get_next(self) -> dict[str, Any] | None:
        batch = next(self._it, None)
        if batch is None:
            return None
        return {n: x.numpy() for n, x in zip(self._names, batch, strict=True)}


def _write(
    model: nn.Module,
    config: QuantizeConfig,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    out_path: Path,
    quantize: Callable[[Path, Path, list[str]], None],
    check_inputs: tuple[torch.Tensor, ...] | None,
) -> QuantizedModel:
    """Export, pre-process, ``quantize(prepared, target, nodes_to_exclude)``, verify, report.

    The quantized graph is compared with the float model on ``check_inputs`` (held-out
    examples; default ``example_inputs``); the step holds the result it keeps to the tolerance
    of its precision, after any recovery has had its chance to close the gap.
    """
    with tempfile.TemporaryDirectory(prefix="slimkit-q-") as tmp:
        float_onnx = Path(tmp) / "float.onnx"
        # Uncompacted: coverage and exclusion lists find layers by their PyTorch names.
        exported = export_onnx(model, example_inputs, input_names, float_onnx, compact=False)
        total = onnx_weight_layers(exported)
        if total == 0:
            raise StepError("The model has no Conv, Gemm or MatMul layer with weights to quantize.")
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference and graph optimisation (BN folded into conv, etc.) before quantizing,
        # as ONNX Runtime's quantization guide prescribes.
        quant_pre_process(str(exported), str(prepared))
        exclude = onnx_nodes_for(prepared, ignored_layers(model, config.ignore))
        # ONNX Runtime's calibrators print progress to stdout; the library stays silent.
        with atomic_path(out_path) as target, contextlib.redirect_stdout(io.StringIO()):
            quantize(prepared, target, exclude)
            float_layers = onnx_float_layers(target)
            tidy_onnx(target, model)
            agreement = compare_onnx(target, model, check_inputs or example_inputs, input_names)
            log.info("quantized graph runs; max |logit diff| vs float %.4f", agreement.max_diff)
    return QuantizedModel(
        model, "onnxruntime", total - len(float_layers), float_layers, out_path, agreement
    )


def quantize_static_int8(
    model: nn.Module,
    config: StaticInt8Config,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    out_path: Path,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
    check_inputs: tuple[torch.Tensor, ...] | None = None,
    **_: Any,
) -> QuantizedModel:
    batches = list(calibration or [])
    check_calibration(batches)
    activations = config.activations or IntType.UINT8

    def run(prepared: Path, target: Path, exclude: list[str]) -> None:
        quantize_static(
            str(prepared),
            str(target),
            _Reader(batches, input_names),
            quant_format=QuantFormat.QDQ,
            per_channel=config.per_channel,
            activation_type=_TYPES[activations],
            weight_type=QuantType.QInt8,
            calibrate_method=_METHODS[config.estimator],
            nodes_to_exclude=exclude,
            extra_options={
                "CalibPercentile": config.percentile,
                "ActivationSymmetric": activations is IntType.INT8,
            },
        )

    return _write(model, config, example_inputs, input_names, out_path, run, check_inputs)


def quantize_dynamic_int8(
    model: nn.Module,
    config: DynamicInt8Config,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    out_path: Path,
    check_inputs: tuple[torch.Tensor, ...] | None = None,
    **_: Any,
) -> QuantizedModel:
    def run(prepared: Path, target: Path, exclude: list[str]) -> None:
        quantize_dynamic(
            str(prepared),
            str(target),
            per_channel=config.per_channel,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
        )

    return _write(model, config, example_inputs, input_names, out_path, run, check_inputs)


def quantize_weight_only(
    model: nn.Module,
    config: WeightOnlyConfig,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    out_path: Path,
    check_inputs: tuple[torch.Tensor, ...] | None = None,
    **_: Any,
) -> QuantizedModel:
    bits = 4 if isinstance(config, WeightOnlyInt4Config) else 8

    def run(prepared: Path, target: Path, exclude: list[str]) -> None:
        algo = DefaultWeightOnlyQuantConfig(
            block_size=config.group_size,
            is_symmetric=True,
            bits=bits,
            op_types_to_quantize=("MatMul",),
        )
        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(prepared)), nodes_to_exclude=exclude, algo_config=algo
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)

    result = _write(model, config, example_inputs, input_names, out_path, run, check_inputs)
    if result.quantized_layers == 0:
        raise StepError(
            f"{config.mode} quantizes MatMul weights (the Linear layers of transformers); none of "
            f"this model's layers qualified ({', '.join(result.float_layers[:4])} stay float). "
            "Use static-int8 for convolutional nets."
        )
    return result
