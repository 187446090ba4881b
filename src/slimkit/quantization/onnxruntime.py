"""int8 and 4-bit quantization with ONNX Runtime's quantization tools, served by ONNX Runtime.

static-int8 and dynamic-int8 write QDQ / integer-op graphs; the weight-only modes replace each
MatMul by ``MatMulNBits``, which stores 4- or 8-bit weights with group-wise scales and has CPU
kernels. They also store Gemm weights in their bits, and Conv weights in int8, behind a
``DequantizeLinear``, which the ONNX Runtime runtime folds back to float when it loads the
graph: low-bit on disk, float kernels at run time, which beat int8 ones on layers too narrow to
fill a vector register. int8 takes one scale per output channel; int4 one per ``group_size``
inputs of a Gemm, as ``MatMulNBits`` does, since 15 levels are too coarse for a whole row of a
wide layer. Conv weights stay int8 under int4: a kernel has too few inputs per output channel
for groups, and per channel its 4-bit error broke a small CNN's fidelity check
(docs/measurements.md, "int8 weights over float kernels"). 4-bit ``DequantizeLinear`` is ONNX
opset 21. Every graph is verified against the float model before it is returned.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx
import onnx.version_converter
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

INT4_OPSET = 21  # the first ONNX opset whose DequantizeLinear reads int4

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
        low_bit_conv_gemm_weights(graph, set(exclude), bits, config.group_size)
        onnx.save(graph, str(target))

    result = _write(model, config, example_inputs, input_names, out_path, run, check_inputs)
    if result.quantized_layers == 0:
        raise StepError(
            f"{config.mode} quantizes the weights of MatMul, Gemm and Conv layers; none of this "
            f"model's layers qualified ({', '.join(result.float_layers[:4])} stay float)."
        )
    return result


def _scales(w: np.ndarray, axis: int, block: int | None, levels: int) -> np.ndarray:
    """Symmetric scales of ``w``: one per index of ``axis`` (the output channels), or, with
    ``block``, one per ``block`` consecutive entries along ``axis`` (the inputs) for each index
    of the other axis (a 2-D weight). Shaped as ``DequantizeLinear`` takes them."""
    if block is None:
        others = tuple(d for d in range(w.ndim) if d != axis)
        return np.maximum(np.abs(w).max(axis=others), 1e-12) / levels
    moved = np.moveaxis(np.abs(w), axis, -1)  # (outputs, inputs)
    pad = -moved.shape[-1] % block
    blocks = np.pad(moved, ((0, 0), (0, pad))).reshape(moved.shape[0], -1, block)
    return np.moveaxis(np.maximum(blocks.max(axis=-1), 1e-12) / levels, -1, axis)


def low_bit_conv_gemm_weights(
    model: onnx.ModelProto, exclude: set[str], bits: int, group_size: int
) -> None:
    """Store each Gemm float weight as symmetric int8 (one scale per output channel) or int4
    (one per ``group_size`` inputs), and each Conv weight as int8 (per output channel), read
    through a ``DequantizeLinear`` (in place; nodes named in ``exclude`` stay float)."""
    graph = model.graph
    stored = {i.name: i for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    added: list[onnx.NodeProto] = []
    int4 = False
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm") or node.name in exclude:
            continue
        if len(node.input) < 2 or node.input[1] not in stored:
            continue
        name = node.input[1]
        w = onnx.numpy_helper.to_array(stored[name])
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        outputs = 1 if node.op_type == "Gemm" and not trans_b else 0
        blocked = bits == 4 and node.op_type == "Gemm"
        levels = 7 if blocked else 127  # symmetric: -7..7, -127..127
        if blocked:  # one scale per group of inputs, repeated over it, the last group cut
            axis = 1 - outputs
            scale = _scales(w, axis, group_size, levels)
            per_weight = np.repeat(scale, group_size, axis)[tuple(slice(0, n) for n in w.shape)]
        else:
            axis = outputs
            scale = _scales(w, axis, None, levels)
            per_weight = np.expand_dims(scale, tuple(d for d in range(w.ndim) if d != axis))
        element = ml_dtypes.int4 if blocked else np.int8  # int4 stored two per byte
        q = np.clip(np.round(w / per_weight), -levels, levels).astype(element)
        graph.initializer.remove(stored.pop(name))
        graph.initializer.extend(
            [
                onnx.numpy_helper.from_array(q, f"{name}_quantized"),
                onnx.numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
            ]
        )
        dequantize = onnx.helper.make_node(
            "DequantizeLinear",
            [f"{name}_quantized", f"{name}_scale"],
            [name],
            name=f"{name}_DequantizeLinear",
            axis=axis,
        )
        if blocked:
            dequantize.attribute.append(onnx.helper.make_attribute("block_size", group_size))
            int4 = True
        added.append(dequantize)
    nodes = [*added, *graph.node]  # topological: the dequantized weights come first
    del graph.node[:]
    graph.node.extend(nodes)
    if int4:
        _require_opset(model, INT4_OPSET)


def _require_opset(model: onnx.ModelProto, version: int) -> None:
    """Convert ``model`` in place to at least ``version`` of the default ONNX domain."""
    current = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if current < version:
        model.CopyFrom(onnx.version_converter.convert_version(model, version))
