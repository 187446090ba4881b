"""int8 and weight-only quantization with NNCF, served by OpenVINO.

The model goes through slimkit's verified ONNX export (or is the ONNX graph a user gave) and
``openvino.convert_model``; NNCF quantizes the OpenVINO model and the result is saved as IR.

- **static-int8**: ``nncf.quantize`` with the calibration batches, min/max activation ranges,
  and the model type NNCF tunes for (``model_type``; by default ``TRANSFORMER`` for a model of a
  registered transformer family or one that takes token ids, its preset then keeping activations
  asymmetric, else the CNN default with symmetric activations, ``PERFORMANCE``).
  With ``int4_embeddings``, ``nncf.compress_weights`` first stores the token tables (the
  embedding ``Gather`` ops) in asymmetric 4 bits, in groups of up to 128, and quantization then
  leaves them so: in a one-layer student on a trimmed vocabulary the table is most of the file,
  while unpacking the rows looked up took an eighth of its time (docs/measurements.md).
- **weight-only-int8 / int4**: ``nncf.compress_weights``; int8 per output channel (NNCF has no
  int8 groups), int4 symmetric in groups of ``group_size``, with NNCF's default of keeping the
  embeddings and the last layer in int8.

``ignore:`` names PyTorch layers as everywhere; they become NNCF's ignored scope (the OpenVINO
ops whose weight constant is the layer's). Every IR is run on held-out inputs and compared with
the float model before it is returned.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nncf
import openvino as ov
import torch
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
from nncf.quantization.range_estimator import RangeEstimatorParametersSet
from torch import nn

from slimkit.data.bundle import DataBundle
from slimkit.export.onnx import export_onnx
from slimkit.models.families import find_family
from slimkit.quantization.calibration import check_calibration
from slimkit.quantization.configs import (
    ModelKind,
    QuantizeConfig,
    StaticInt8Config,
    WeightOnlyConfig,
    WeightOnlyInt4Config,
)
from slimkit.quantization.coverage import ignored_layers
from slimkit.quantization.result import QuantizedModel
from slimkit.runtimes.openvino import agreement, compile_ir, core, engine_of, save_ir

nncf.set_log_level(logging.ERROR)  # NNCF logs every algorithm's progress at INFO
_WEIGHT_OPS = {"MatMul", "Convolution", "GroupConvolution"}
_PASS_THROUGH = {"Convert", "Multiply", "Subtract", "Reshape", "FakeQuantize", "FakeConvert"}


def _weight_constant(op: ov.Node, port: int = 1) -> ov.Node | None:
    """The Constant an op's weight input (``port``) comes from, through dequantization and
    reshapes."""
    node = op.input_value(port).get_node()
    while node.get_type_name() in _PASS_THROUGH:
        node = node.input_value(0).get_node()
    return node if node.get_type_name() == "Constant" else None


def _weight_ops(model: ov.Model) -> list[tuple[ov.Node, ov.Node]]:
    """``(op, weight constant)`` for every MatMul / convolution with stored weights."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() in _WEIGHT_OPS:
            constant = _weight_constant(op)
            if constant is not None:
                found.append((op, constant))
    return found


def _token_tables(model: ov.Model) -> list[tuple[ov.Node, ov.Node]]:
    """``(op, table constant)`` for every embedding lookup: a ``Gather`` from a stored float
    matrix."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Gather":
            constant = _weight_constant(op, port=0)
            if (
                constant is not None
                and constant.get_element_type().is_real()
                and len(constant.get_output_partial_shape(0)) == 2
            ):
                found.append((op, constant))
    return found


def _float_layers(model: ov.Model) -> list[str]:
    """Weight ops NNCF left in float: their weight reaches them as f32, not via int8/int4."""
    floats = []
    for op, constant in _weight_ops(model):
        source = op.input_value(1).get_node()
        quantized = source.get_type_name() == "FakeQuantize" or constant.get_element_type() in (
            ov.Type.i8,
            ov.Type.u8,
            ov.Type.i4,
            ov.Type.u4,
        )
        if not quantized:
            floats.append(constant.get_friendly_name().removesuffix(".weight"))
    return floats


def _ignored(
    model: nn.Module, config: QuantizeConfig, ops: list[tuple[ov.Node, ov.Node]]
) -> list[str]:
    """The names of those of ``ops`` (op, weight constant) whose PyTorch layer
    ``config.ignore`` selects."""
    weights = {f"{name}.weight" for name in ignored_layers(model, config.ignore)}
    return [op.get_friendly_name() for op, c in ops if c.get_friendly_name() in weights]


def _ignored_scope(
    model: nn.Module, config: QuantizeConfig, ov_model: ov.Model
) -> nncf.IgnoredScope:
    """The OpenVINO ops of the PyTorch layers ``config.ignore`` selects."""
    return nncf.IgnoredScope(names=_ignored(model, config, _weight_ops(ov_model)), validate=False)


def _is_transformer(
    model: nn.Module, config: StaticInt8Config, example_inputs: tuple[torch.Tensor, ...]
) -> bool:
    if config.model_type is not ModelKind.AUTO:
        return config.model_type is ModelKind.TRANSFORMER
    return find_family(model, strict=False) is not None or any(
        not x.is_floating_point() for x in example_inputs
    )


def _int4_embeddings(model: nn.Module, config: StaticInt8Config, ov_model: ov.Model) -> ov.Model:
    """``ov_model`` with its token tables in asymmetric 4 bits, in groups of the largest power
    of two up to 128 that divides a table's width (else one group per row); every other weight,
    and the tables ``config.ignore`` names, as they were."""
    tables = _token_tables(ov_model)
    kept = set(_ignored(model, config, tables))
    chosen = [(op, c) for op, c in tables if op.get_friendly_name() not in kept]
    if not chosen:
        return ov_model
    width = math.gcd(*(c.get_output_partial_shape(0)[1].get_length() for _, c in chosen))
    group = next((g for g in (128, 64, 32, 16) if width % g == 0), -1)
    others = [op.get_friendly_name() for op, _ in _weight_ops(ov_model)]
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.compress_weights(
            ov_model,
            mode=nncf.CompressWeightsMode.INT4_ASYM,
            ratio=1.0,
            group_size=group,
            all_layers=True,
            ignored_scope=nncf.IgnoredScope(names=[*others, *kept], validate=False),
        )


def _static_settings(
    model: nn.Module,
    config: StaticInt8Config,
    example_inputs: tuple[torch.Tensor, ...],
    ov_model: ov.Model,
    batches: list[tuple[torch.Tensor, ...]],
) -> dict[str, Any]:
    """What both static-int8 paths (plain and accuracy-controlled) hand ``nncf``: the
    calibration set, the preset and model type, the ignored scope."""
    transformer = _is_transformer(model, config, example_inputs)
    presets = nncf.QuantizationPreset
    return {
        "calibration_dataset": nncf.Dataset(batches, lambda batch: [x.numpy() for x in batch]),
        "subset_size": len(batches),
        "preset": presets.MIXED if transformer else presets.PERFORMANCE,
        "model_type": nncf.ModelType.TRANSFORMER if transformer else None,
        "ignored_scope": _ignored_scope(model, config, ov_model),
    }


def _convert(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    tmp: Path,
) -> ov.Model:
    # Uncompacted: the ignored scope finds layers by their PyTorch weight names.
    exported = export_onnx(model, example_inputs, input_names, tmp / "float.onnx", compact=False)
    return ov.convert_model(str(exported))


def _static_start(
    model: nn.Module,
    config: StaticInt8Config,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    tmp: Path,
) -> ov.Model:
    """The IR both static-int8 paths hand NNCF: the float model, its token tables in 4 bits
    where ``config.int4_embeddings`` asks."""
    ov_model = _convert(model, example_inputs, input_names, tmp)
    return _int4_embeddings(model, config, ov_model) if config.int4_embeddings else ov_model


def _finish(
    model: nn.Module,
    quantized: ov.Model,
    out_path: Path,
    names: tuple[str, ...],
    check_inputs: tuple[torch.Tensor, ...],
) -> QuantizedModel:
    xml = out_path.with_suffix(".xml")
    save_ir(quantized, xml, precision="default")
    total = len(_weight_ops(quantized))
    floats = _float_layers(quantized)
    compiled = compile_ir(core().read_model(str(xml)), 1, None)
    check = agreement(engine_of(compiled, names), model, check_inputs)
    return QuantizedModel(model, "openvino", total - len(floats), floats, xml, check)


def quantize_static_nncf(
    model: nn.Module,
    config: StaticInt8Config,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    out_path: Path,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
    check_inputs: tuple[torch.Tensor, ...] | None = None,
    **_: object,
) -> QuantizedModel:
    """Static int8 with ``nncf.quantize`` (see the module docstring)."""
    batches = list(calibration or ())
    check_calibration(batches)
    with tempfile.TemporaryDirectory(prefix="slimkit-nncf-") as tmp:
        ov_model = _static_start(model, config, example_inputs, input_names, Path(tmp))
        with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws progress bars
            quantized = nncf.quantize(
                ov_model,
                **_static_settings(model, config, example_inputs, ov_model, batches),
                advanced_parameters=AdvancedQuantizationParameters(
                    activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
                ),
            )
        return _finish(model, quantized, out_path, input_names, check_inputs or example_inputs)


def compress_weights_nncf(
    model: nn.Module,
    config: WeightOnlyConfig,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    out_path: Path,
    check_inputs: tuple[torch.Tensor, ...] | None = None,
    **_: object,
) -> QuantizedModel:
    """Weight-only int8 (per channel) or int4 (groups) with ``nncf.compress_weights``."""
    int4 = isinstance(config, WeightOnlyInt4Config)
    with tempfile.TemporaryDirectory(prefix="slimkit-nncf-") as tmp:
        ov_model = _convert(model, example_inputs, input_names, Path(tmp))
        with contextlib.redirect_stdout(io.StringIO()):
            compressed = nncf.compress_weights(
                ov_model,
                mode=nncf.CompressWeightsMode.INT4_SYM
                if int4
                else nncf.CompressWeightsMode.INT8_ASYM,
                group_size=config.group_size if int4 else None,
                ratio=1.0 if int4 else None,
                ignored_scope=_ignored_scope(model, config, ov_model),
            )
        return _finish(model, compressed, out_path, input_names, check_inputs or example_inputs)


def to_bf16_openvino(
    model: nn.Module,
    config: QuantizeConfig,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    out_path: Path,
    check_inputs: tuple[torch.Tensor, ...] | None = None,
    **_: object,
) -> QuantizedModel:
    """The fp32 IR served in bf16: OpenVINO's bf16 kernels, weights converted at load."""
    with tempfile.TemporaryDirectory(prefix="slimkit-ov-") as tmp:
        ov_model = _convert(model, example_inputs, input_names, Path(tmp))
    xml = out_path.with_suffix(".xml")
    save_ir(ov_model, xml, precision="bf16")
    compiled = compile_ir(core().read_model(str(xml)), 1, "bf16")
    check = agreement(engine_of(compiled, input_names), model, check_inputs or example_inputs)
    return QuantizedModel(model, "openvino", len(_weight_ops(ov_model)), [], xml, check)


def quantize_with_accuracy_control_nncf(
    model: nn.Module,
    config: StaticInt8Config,
    *,
    data: DataBundle,
    out_path: Path,
    calibration: list[tuple[torch.Tensor, ...]],
    max_drop: float,
) -> QuantizedModel:
    """NNCF's accuracy-aware int8: quantize, then return layers to float, most harmful first
    (as NNCF ranks them), until validation accuracy is within ``max_drop`` points of the float
    model's, scored by slimkit's accuracy on the validation split."""
    check_calibration(calibration)
    example = data.sample_inputs(8)
    validation = [(x, y) for x, y in data.val.batches(64)]

    def validate(compiled: ov.CompiledModel, items: Iterable[Any]) -> tuple[float, None]:
        correct = total = 0
        for inputs, labels in items:
            logits = compiled([x.numpy() for x in inputs])[0]
            correct += int((logits.argmax(axis=1) == labels.numpy()).sum())
            total += len(labels)
        return correct / max(total, 1), None

    with tempfile.TemporaryDirectory(prefix="slimkit-nncf-") as tmp:
        ov_model = _static_start(model, config, example, data.input_names, Path(tmp))
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize_with_accuracy_control(
                ov_model,
                validation_dataset=nncf.Dataset(validation),
                validation_fn=validate,
                max_drop=max_drop / 100.0,
                drop_type=nncf.DropType.ABSOLUTE,
                **_static_settings(model, config, example, ov_model, calibration),
            )
        return _finish(model, quantized, out_path, data.input_names, data.held_out_inputs())
