"""ONNX export with verification: a file is reported only once ONNX Runtime agrees with PyTorch.

Verification runs the graph on held-out inputs (not the ones it was traced with) and bounds the
largest difference from the PyTorch model by a tolerance stated per precision.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import torch
from torch import nn

from slimkit._digest import model_digest
from slimkit._io import atomic_path
from slimkit.errors import ExportError
from slimkit.export.compact import compact_graph
from slimkit.models.graph import OnnxGraph


@dataclass(frozen=True)
class Tolerance:
    """How far a graph's outputs may lie from PyTorch's: ``abs + rel * scale``, where the
    difference and the scale are both taken ``over`` the outputs as their largest absolute value
    (``max``) or their root mean square (``rms``)."""

    abs: float
    rel: float
    over: Literal["max", "rms"] = "max"

    def bound(self, scale: float) -> float:
        return self.abs + self.rel * scale


# fp32: the same function; kernels reassociate sums, ~1e-5 on logits of order 10, so every
# output is held to it. int8 / int4 / bf16: an approximation of the float model, held to it as a
# whole, by the root mean square of the difference against that of the outputs: the single worst
# logit of a batch is quantization noise's tail (docs/measurements.md, "Export tolerances"). A
# wrong graph (misrouted input, lost layer, wrong scale) misses by the order of the outputs.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(abs=1e-3, rel=1e-4),
    "int8": Tolerance(abs=1e-2, rel=0.25, over="rms"),
    "int4": Tolerance(abs=1e-2, rel=0.3, over="rms"),
    "bf16": Tolerance(abs=1e-2, rel=0.05, over="rms"),
}


# The exporter's graph of the model exported last, by its key (see export_onnx).
_TRACED: dict[str, bytes] = {}
KEEP_AT_MOST = 512 << 20  # bytes: a larger graph is traced again rather than held in memory


def export_onnx(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    path: str | os.PathLike[str],
    check_inputs: tuple[torch.Tensor, ...] | None = None,
    compact: bool = True,
) -> Path:
    """Export ``model`` to ONNX with a dynamic batch axis (and a dynamic sequence axis for
    token inputs), check and verify it, write atomically.

    ``inputs`` are traced; the graph is verified on ``check_inputs`` (held-out examples; default
    ``inputs``) at the fp32 tolerance. ``compact`` renames values and nodes tersely
    (:func:`~slimkit.export.compact.compact_graph`); a graph that tools will read by PyTorch
    names (a quantizer's input) is exported with ``compact=False``.

    One model is often exported several times over: served on a runtime, then handed to a
    quantizer, then re-quantized on each rung of the recovery ladder. The traced graph of the
    last model is kept in memory while the model's digest (module tree, hooks, every tensor)
    and the inputs' names, types and sizes on the static axes are unchanged (the graph serves
    any batch and any text length). A kept graph is verified like a fresh one, and traced
    afresh if it disagrees.
    """
    if isinstance(model, OnnxGraph):  # already a graph: written as it is, never re-traced
        model.save_copy(Path(path))
        return Path(path)
    model.eval()
    digest = model_digest(model)
    axes = _dynamic_axes(inputs)
    traced = [
        (n, x.dtype, [None if d in dyn else size for d, size in enumerate(x.shape)])
        for n, x, dyn in zip(input_names, inputs, axes, strict=True)
    ]
    key = f"{digest}:{traced}" if digest is not None else None
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = _TRACED.get(key) if key is not None else None
        if kept is not None:
            tmp.write_bytes(kept)
            tidy_onnx(tmp, model if compact else None)
            try:
                verify_onnx(tmp, model, check_inputs or inputs, input_names, "fp32")
                return Path(path)
            except ExportError:
                pass
        _TRACED.clear()
        _trace(model, inputs, input_names, tmp)
        if key is not None and tmp.stat().st_size <= KEEP_AT_MOST:
            _TRACED[key] = tmp.read_bytes()
        tidy_onnx(tmp, model if compact else None)
        verify_onnx(tmp, model, check_inputs or inputs, input_names, "fp32")
    return Path(path)


def _dynamic_axes(inputs: tuple[torch.Tensor, ...]) -> list[tuple[int, ...]]:
    """Each input's dynamic axes: the batch, and the sequence of token ids and masks ([batch,
    sequence] integers), so the graph serves texts of any length."""
    return [(0, 1) if x.dim() == 2 and not x.is_floating_point() else (0,) for x in inputs]


def _trace(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], input_names: tuple[str, ...], path: Path
) -> None:
    """Run the exporter: ``model`` traced on ``inputs``, written to ``path``."""
    dims = {
        0: torch.export.Dim("batch", min=1, max=65536),
        1: torch.export.Dim("sequence", min=2, max=65536),
    }
    dynamic = tuple({d: dims[d] for d in axes} for axes in _dynamic_axes(inputs))
    try:
        # The exporter prints progress lines of its own; keep the library silent.
        with contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(
                model,
                inputs,
                str(path),
                input_names=list(input_names),
                output_names=["logits"],
                dynamic_shapes=dynamic,
                external_data=False,
                verbose=False,
            )
    except Exception as err:  # the exporter raises many types; all mean "cannot export"
        raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: {err}") from None


def tidy_onnx(path: str | os.PathLike[str], compact_for: nn.Module | None = None) -> None:
    """Drop what only debugging needs and, with ``compact_for``, compact names; one load, one save.

    The exporter annotates every node with its PyTorch origin and the graph with the exported
    program's signature; on a small model that is as large as the weights, and the runtime
    never reads it. Names stay unless ``compact_for`` (the model the
    graph computes, whose module names stored tensors keep as prefixes) asks for
    :func:`~slimkit.export.compact.compact_graph`.
    """
    proto = onnx.load(str(path))
    for node in proto.graph.node:
        node.ClearField("metadata_props")
        node.doc_string = ""
    proto.graph.ClearField("value_info")
    proto.graph.ClearField("metadata_props")
    if compact_for is not None:
        compact_graph(proto.graph, (name for name, _ in compact_for.named_modules()))
    onnx.save(proto, str(path))


@dataclass(frozen=True)
class Agreement:
    """How closely a graph's outputs follow the PyTorch model's on held-out inputs."""

    max_diff: float  # largest |ONNX output - PyTorch output|
    scale: float  # largest |PyTorch output|
    rms_diff: float = 0.0  # root mean square of (ONNX output - PyTorch output)
    rms_scale: float = 0.0  # root mean square of the PyTorch outputs

    @classmethod
    def between(cls, got: np.ndarray, want: np.ndarray, what: str = "ONNX model") -> Agreement:
        """How far ``got`` (a runtime's outputs) lies from ``want`` (PyTorch's); raises
        :class:`ExportError` for outputs of another shape or non-finite ones."""
        if got.shape != want.shape or not np.isfinite(got).all():
            found = "non-finite values" if got.shape == want.shape else got.shape
            raise ExportError(
                f"The {what} gives {found} where PyTorch gives finite outputs of shape "
                f"{want.shape}."
            )
        diff = got.astype(np.float64) - want
        return cls(
            float(np.max(np.abs(diff))),
            float(np.max(np.abs(want))),
            float(np.sqrt(np.mean(diff**2))),
            float(np.sqrt(np.mean(np.square(want, dtype=np.float64)))),
        )

    def check(self, precision: str, what: str = "ONNX model") -> None:
        """Raise :class:`ExportError`, naming the difference, beyond the tolerance."""
        tolerance = TOLERANCES[precision]
        rms = tolerance.over == "rms"
        diff, scale = (self.rms_diff, self.rms_scale) if rms else (self.max_diff, self.scale)
        bound = tolerance.bound(scale)
        if diff <= bound:
            return
        hint = (
            ""
            if precision == "fp32"
            else " To bring a quantized model closer, set max_accuracy_drop so the recovery "
            "ladder runs (per-channel weights, other range estimators, float layers)."
        )
        by, outputs = (
            (f"{diff:.4g} root mean square", "outputs' RMS")
            if rms
            else (f"up to {diff:.4g}", "largest output")
        )
        raise ExportError(
            f"The {precision} {what}'s outputs differ from PyTorch's by {by} on held-out inputs "
            f"({outputs} {scale:.4g}; "
            f"{precision} tolerance {tolerance.abs:g} + {tolerance.rel:g} x {scale:.4g} = "
            f"{bound:.4g}): the graph does not compute this model faithfully.{hint}"
        )


def compare_onnx(
    path: str | os.PathLike[str],
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
) -> Agreement:
    """Check the graph with ``onnx.checker``, run it on ``inputs``, compare with PyTorch.

    Raises :class:`ExportError` if the graph is invalid, does not run, or gives non-finite
    outputs or outputs of another shape than PyTorch's; returns how far apart the outputs are.
    """
    try:
        onnx.checker.check_model(str(path))
    except Exception as err:  # ValidationError, or a protobuf error on a torn file
        raise ExportError(f"The exported ONNX graph {path} is invalid: {err}") from None
    from slimkit.sessions import session

    sess = session(Path(path), threads=1)
    got = sess.run(None, {n: x.numpy() for n, x in zip(input_names, inputs, strict=True)})[0]
    with torch.inference_mode():
        want = model(*inputs).float().numpy()
    return Agreement.between(got, want)


def verify_onnx(
    path: str | os.PathLike[str],
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    precision: str,
) -> Agreement:
    """:func:`compare_onnx`, then hold the difference to ``TOLERANCES[precision]``."""
    agreement = compare_onnx(path, model, inputs, input_names)
    agreement.check(precision)
    return agreement
