"""Static int8 and QAT through torchao's PT2E flow, served by torch.compile (inductor).

The model is captured with ``torch.export`` (dynamic batch), annotated by the x86 inductor
quantizer (int8 per-channel symmetric weights, uint8 per-tensor activations, conv-BN folded),
calibrated or trained with fake quantization, converted, and compiled: inductor fuses the
quantize/dequantize pairs into int8 kernels. The artifact is the exported program (``.pt2``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchao.quantization.pt2e.qat_utils as qat_utils
import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
from torch import nn
from torchao.quantization.pt2e import (
    HistogramObserver,
    MinMaxObserver,
    allow_exported_model_train_eval,
    move_exported_model_to_eval,
)
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

from slimkit._io import write_bytes
from slimkit.errors import StepError
from slimkit.export.onnx import Agreement
from slimkit.quantization.calibration import check_calibration
from slimkit.quantization.configs import Estimator, QatConfig, QuantizeConfig, StaticInt8Config
from slimkit.quantization.coverage import conv_linear_coverage, ignored_layers
from slimkit.quantization.result import QuantizedModel

aten = torch.ops.aten

# HistogramObserver searches the clipping range that minimises the L2 (squared) quantization
# error over the activation histogram: the "mse" estimator. MinMaxObserver keeps the full range.
_OBSERVERS = {Estimator.MINMAX: MinMaxObserver, Estimator.MSE: HistogramObserver}
_EPS = 2**-12  # torchao's default floor on scales


def _dynamic_batch(inputs: tuple[torch.Tensor, ...]) -> tuple[dict[int, Any], ...]:
    batch = torch.export.Dim("batch", min=1, max=65536)
    return tuple({0: batch} for _ in inputs)


def _capture(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> torch.fx.GraphModule:
    try:
        program = torch.export.export(
            model, example_inputs, dynamic_shapes=_dynamic_batch(example_inputs)
        )
    except Exception as err:  # torch.export raises many types; all mean "cannot capture"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StepError(
            f"torch.export cannot capture {type(model).__name__} for PT2E: {first}"
        ) from None
    return program.module()


def _quantizer(
    estimator: Estimator, is_qat: bool, keep_float: list[str], weight_bits: int = 8
) -> x86.X86InductorQuantizer:
    config = x86.get_default_x86_inductor_quantization_config(is_qat=is_qat)
    if weight_bits != 8:  # symmetric range of a narrower signed integer, stored in int8
        bound = 2 ** (weight_bits - 1)
        weight = dataclasses.replace(config.weight, quant_min=-bound, quant_max=bound - 1)
        config = dataclasses.replace(config, weight=weight)
    if not is_qat:
        observer = _OBSERVERS[estimator].with_args(eps=_EPS)
        spec = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=observer)
        config = dataclasses.replace(config, input_activation=spec)
    quantizer = x86.X86InductorQuantizer().set_global(config)
    for name in keep_float:
        quantizer.set_module_name_qconfig(name, None)
    return quantizer


def _drop_unused_attributes(module: torch.fx.GraphModule) -> None:
    """Delete parameters and buffers the converted graph no longer reads.

    convert_pt2e folds each weight into an int8 constant but leaves the float original
    registered; exported as is, the artifact would carry both, more than twice its size.
    """
    used = {node.target for node in module.graph.nodes if node.op == "get_attr"}
    for name, _ in [*module.named_parameters(), *module.named_buffers()]:
        if name not in used:
            owner_name, _, attr = name.rpartition(".")
            delattr(module.get_submodule(owner_name) if owner_name else module, attr)


def _save_program(
    module: torch.fx.GraphModule,
    example_inputs: tuple[torch.Tensor, ...],
    out_path: Path,
    check_inputs: tuple[torch.Tensor, ...] | None,
) -> Path:
    """Export ``module`` to a ``.pt2`` program, read it back and check it computes ``module``
    on ``check_inputs`` (held-out examples) before it is written into place.

    The program is read back from the bytes just serialised in memory, never from disk:
    ``torch.export.load`` unpickles, so slimkit only ever loads a program it made itself.
    """
    program = torch.export.export(
        module, example_inputs, dynamic_shapes=_dynamic_batch(example_inputs)
    )
    target = out_path.with_suffix(".pt2")
    inputs = check_inputs or example_inputs
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    loaded = torch.export.load(io.BytesIO(buffer.getvalue())).module()
    with torch.inference_mode():
        got, want = loaded(*inputs), module(*inputs)
    diff = float((got - want).abs().max())
    Agreement(diff, float(want.abs().max())).check("fp32", "exported .pt2 program")
    write_bytes(target, buffer.getvalue())
    return target


def _coverage(model: nn.Module, config: QuantizeConfig) -> tuple[list[str], list[str]]:
    """Checked before calibration or training: what will be quantized, what stays float."""
    covered, others = conv_linear_coverage(model)
    keep = ignored_layers(model, config.ignore)
    quantized = [n for n in covered if n not in keep]
    if not quantized:
        raise StepError("PT2E quantizes Conv and Linear layers; this model has none to quantize.")
    return quantized, [*others, *keep]


def _result(
    converted: torch.fx.GraphModule, coverage: tuple[list[str], list[str]], artifact: Path
) -> QuantizedModel:
    allow_exported_model_train_eval(converted)  # runtimes call eval() on what they serve
    return QuantizedModel(converted, "compile", len(coverage[0]), coverage[1], artifact)


def static_int8_pt2e(
    model: nn.Module,
    config: StaticInt8Config,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    out_path: Path,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
    check_inputs: tuple[torch.Tensor, ...] | None = None,
    **_: Any,
) -> QuantizedModel:
    """Post-training static int8: calibrate observers on ``calibration`` batches, convert."""
    batches = list(calibration or [])
    check_calibration(batches)
    coverage = _coverage(model, config)
    prepared = prepare_pt2e(
        _capture(model.eval(), example_inputs),
        _quantizer(config.estimator, False, coverage[1], config.weight_bits),
    )
    with torch.no_grad():
        for batch in batches:
            prepared(*batch)
    converted = convert_pt2e(prepared)
    _drop_unused_attributes(converted)
    return _result(
        converted, coverage, _save_program(converted, example_inputs, out_path, check_inputs)
    )


# The aten ops a captured graph holds for each convolution torchao folds BatchNorm into (as
# torchao's own _is_conv_node and _is_conv_transpose_node name them).
_CONV_OPS: dict[Callable[..., Any], tuple[Any, ...]] = {
    F.conv1d: (aten.conv1d.default, aten.conv1d.padding),
    F.conv2d: (aten.conv2d.default, aten.conv2d.padding),
    F.conv_transpose1d: (aten.conv_transpose1d, aten.conv_transpose1d.default),
    F.conv_transpose2d: (aten.conv_transpose2d, aten.conv_transpose2d.input),
}


@contextlib.contextmanager
def _fold_present_convs_only() -> Iterator[None]:
    """Within it, ``convert_pt2e`` builds BatchNorm-folding patterns only for the kinds of
    convolution the graph holds.

    torchao's QAT convert folds each BatchNorm into its convolution by matching two dozen small
    patterns, each traced with torch.export, for each of conv1d, conv2d and the two transposed
    convolutions: most of a small model's conversion time (docs/measurements.md, "QAT
    conversion"). For a kind the graph does not hold, nothing can match, so only the helper's
    own bookkeeping runs, exactly as it would after matching nothing.
    """
    helper = qat_utils._fold_conv_bn_qat_helper

    def fold(m: torch.fx.GraphModule, conv_fn: Callable[..., Any], *args: Any, **kwargs: Any):
        ops = _CONV_OPS.get(conv_fn)
        if ops is None or any(n.target in ops for n in m.graph.nodes):
            return helper(m, conv_fn, *args, **kwargs)
        m.graph.eliminate_dead_code()
        m.recompile()
        qat_utils._duplicate_dequantize_node(m)
        m.recompile()
        qat_utils._remove_extra_dequantize(m)
        m.graph.eliminate_dead_code()
        m.recompile()
        return m

    qat_utils._fold_conv_bn_qat_helper = fold
    try:
        yield
    finally:
        qat_utils._fold_conv_bn_qat_helper = helper


def qat_pt2e(
    model: nn.Module,
    config: QatConfig,
    *,
    example_inputs: tuple[torch.Tensor, ...],
    out_path: Path,
    train_loop: Callable[[nn.Module], None] | None = None,
    check_inputs: tuple[torch.Tensor, ...] | None = None,
    **_: Any,
) -> QuantizedModel:
    """Quantization-aware training: fine-tune with fake quantization, then convert to int8."""
    if train_loop is None:
        raise StepError("qat trains the model: pass train_loop=f(model) that runs the training.")
    coverage = _coverage(model, config)
    graph = prepare_qat_pt2e(
        _capture(model.train(), example_inputs),
        _quantizer(Estimator.MINMAX, True, coverage[1], config.weight_bits),
    )
    # Let the training loop call train()/eval() as on any module: BatchNorm and dropout switch.
    allow_exported_model_train_eval(graph)
    train_loop(graph)
    move_exported_model_to_eval(graph)
    with _fold_present_convs_only():
        converted = convert_pt2e(graph)
    _drop_unused_attributes(converted)
    model.eval()
    return _result(
        converted, coverage, _save_program(converted, example_inputs, out_path, check_inputs)
    )
