"""ONNX export with verification: a file is reported only once ONNX Runtime agrees with PyTorch."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from slimkit._io import atomic_path
from slimkit.errors import ExportError

# Largest |difference| between PyTorch and ONNX Runtime fp32 outputs that still counts as the
# same model: float reassociation across kernels gives ~1e-5 on logits of order 10.
FP32_TOLERANCE = 1e-3


def export_onnx(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    path: str | os.PathLike[str],
) -> Path:
    """Export ``model`` to ONNX with a dynamic batch axis, check and verify it, write atomically."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = tuple({0: batch} for _ in inputs)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # The exporter prints progress lines of its own; keep the library silent.
            with contextlib.redirect_stdout(io.StringIO()):
                torch.onnx.export(
                    model.eval(),
                    inputs,
                    str(tmp),
                    input_names=list(input_names),
                    output_names=["logits"],
                    dynamic_shapes=dynamic,
                    external_data=False,
                    verbose=False,
                )
        except Exception as err:  # the exporter raises many types; all mean "cannot export"
            raise ExportError(
                f"torch.onnx.export failed for {type(model).__name__}: {err}"
            ) from None
        strip_metadata(tmp)
        verify_onnx(tmp, model, inputs, input_names, FP32_TOLERANCE)
    return Path(path)


def strip_metadata(path: str | os.PathLike[str]) -> None:
    """Drop what only debugging needs (per-node source metadata, doc strings, value_info).

    The exporter annotates every node with its PyTorch origin; on a small model that is as
    large as the weights, and the runtime never reads it. Node names stay.
    """
    proto = onnx.load(str(path))
    for node in proto.graph.node:
        node.ClearField("metadata_props")
        node.doc_string = ""
    proto.graph.ClearField("value_info")
    onnx.save(proto, str(path))


def verify_onnx(
    path: str | os.PathLike[str],
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    input_names: tuple[str, ...],
    tolerance: float | None,
) -> float:
    """Check the graph with ``onnx.checker``, run it, compare with PyTorch; return max |diff|.

    Every graph must pass the checker, run in ONNX Runtime and give finite outputs of the
    PyTorch model's shape. ``tolerance`` bounds max |diff| for exports meant to compute the
    same function (fp32: :data:`FP32_TOLERANCE`); quantized graphs pass ``None``: their error
    is quantization, judged as accuracy against the step's ``max_accuracy_drop``.
    """
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as err:
        raise ExportError(f"The exported ONNX graph is invalid: {err}") from None
    from slimkit.runtimes.onnxruntime import session

    sess = session(Path(path), threads=1)
    got = sess.run(None, {n: x.numpy() for n, x in zip(input_names, inputs, strict=True)})[0]
    with torch.inference_mode():
        want = model(*inputs).float().numpy()
    if got.shape != want.shape or not np.isfinite(got).all():
        raise ExportError(
            f"The ONNX model gives {'non-finite values' if got.shape == want.shape else got.shape} "
            f"where PyTorch gives finite outputs of shape {want.shape}."
        )
    diff = float(np.max(np.abs(got - want)))
    if tolerance is not None and not diff <= tolerance:
        raise ExportError(
            f"The ONNX model's outputs differ from PyTorch's by up to {diff:.3g} "
            f"(tolerance {tolerance:g}); the export is not faithful."
        )
    return diff
