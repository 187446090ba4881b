"""int8 and 4-bit quantization with ONNX Runtime's quantization tools, served by ONNX Runtime.

static-int8 and dynamic-int8 write QDQ / integer-op graphs; the weight-only modes replace each
MatMul by ``MatMulNBits``, which stores two 4-bit weights per byte with group-wise scales and has
CPU kernels. weight-only-int8 also stores Conv and Gemm weights as int8 with one scale per output
channel behind a ``DequantizeLinear``, which the ONNX Runtime runtime folds back to float when it
loads the graph: int8 on disk, float kernels at run time, which beat int8 ones on layers too
narrow to fill a vector register. Every graph is verified against the float model before it is
returned.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
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
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from slimkit._io import atomic_path
from slimkit._quiet import import_quietly
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

# Imported apart: at import it calls logging.basicConfig(level=INFO) on the user's process.
_nbits = import_quietly("onnxruntime.quantization.matmul_nbits_quantizer")


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
        pre_process(exported, prepared)
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


def pre_process(exported: Path, prepared: Path) -> None:
    """Shape inference and graph optimisation (BN folded into conv, etc.) before quantizing, as
    ONNX Runtime's quantization guide prescribes. ORT's symbolic shape inference gives up on
    some transformers' graphs with a dynamic sequence axis, and then dumps the graph into the
    working directory; for graphs with more than one symbolic axis per input it is skipped, and
    ONNX's own shape inference suffices (the quantizers read weight shapes, which are static)."""
    graph = onnx.load(str(exported), load_external_data=False).graph
    symbolic = max(
        (sum(1 for d in i.type.tensor_type.shape.dim if d.dim_param) for i in graph.input),
        default=0,
    )
    quant_pre_process(str(exported), str(prepared), skip_symbolic_shape=symbolic > 1)


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
        try:
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
        except ValueError as err:  # its histogram calibrators fail on some graphs' tensors
            minmax = config.estimator is Estimator.MINMAX
            others = "" if minmax else "; estimator: minmax needs no histogram"
            raise StepError(
                f"ONNX Runtime's {config.estimator} calibration failed on this graph: "
                f"{' '.join(str(err).split())[:200]}{others}."
            ) from None

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
        algo = _nbits.DefaultWeightOnlyQuantConfig(
            block_size=config.group_size,
            is_symmetric=True,
            bits=bits,
            op_types_to_quantize=("MatMul",),
        )
        quantizer = _nbits.MatMulNBitsQuantizer(
            onnx.load(str(prepared)), nodes_to_exclude=exclude, algo_config=algo
        )
        quantizer.process()
        graph = quantizer.model.model
        if bits == 8:
            _int8_conv_gemm_weights(graph, set(exclude))
        onnx.save(graph, str(target))

    result = _write(model, config, example_inputs, input_names, out_path, run, check_inputs)
    if result.quantized_layers == 0:
        raise StepError(
            f"{config.mode} quantizes MatMul weights (the Linear layers of transformers); none of "
            f"this model's layers qualified ({', '.join(result.float_layers[:4])} stay float). "
            "Use weight-only-int8 or static-int8 for convolutional nets."
        )
    return result


def _int8_conv_gemm_weights(model: onnx.ModelProto, exclude: set[str]) -> None:
    """Store each Conv/Gemm float weight as symmetric int8 with one scale per output channel,
    read through a ``DequantizeLinear`` (in place; nodes named in ``exclude`` stay float)."""
    graph = model.graph
    stored = {i.name: i for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    added: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm") or node.name in exclude:
            continue
        if len(node.input) < 2 or node.input[1] not in stored:
            continue
        name = node.input[1]
        w = onnx.numpy_helper.to_array(stored[name])
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        axis = 1 if node.op_type == "Gemm" and not trans_b else 0  # the output channels
        others = tuple(d for d in range(w.ndim) if d != axis)
        scale = np.maximum(np.abs(w).max(axis=others), 1e-12) / 127.0
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        graph.initializer.remove(stored.pop(name))
        graph.initializer.extend(
            [
                onnx.numpy_helper.from_array(q, f"{name}_quantized"),
                onnx.numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
            ]
        )
        added.append(
            onnx.helper.make_node(
                "DequantizeLinear",
                [f"{name}_quantized", f"{name}_scale"],
                [name],
                name=f"{name}_DequantizeLinear",
                axis=axis,
            )
        )
    nodes = [*added, *graph.node]  # topological: the dequantized weights come first
    del graph.node[:]
    graph.node.extend(nodes)
