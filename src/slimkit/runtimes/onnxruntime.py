"""ONNX Runtime on the CPU execution provider. Artifact: the ``.onnx`` file it loads.

Two serving settings are decided per model, not assumed:

- **Threads.** A session may use up to the run's thread count; for small models at small
  batches the intra-op thread pool costs more than it saves (docs/measurements.md, "Threads"),
  so both are timed and the faster kept (:func:`~slimkit.runtimes.base.fewer_threads`).
- **Weight-only graphs** (int8 weights behind ``DequantizeLinear``, float activations) are
  dequantized once when the session loads: ONNX Runtime's QDQ handling would otherwise keep the
  ``DequantizeLinear`` nodes and run them on every call. The file stays int8 on disk.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import torch

from slimkit._io import copy_file
from slimkit.errors import StepError
from slimkit.export.onnx import export_onnx
from slimkit.runtimes.base import Prepared, ServeContext, fewer_threads, register_runtime
from slimkit.sessions import feeds, session
from slimkit.state import ModelState

_QUANTIZING_OPS = {"QuantizeLinear", "DynamicQuantizeLinear"}


def weight_only(path: Path) -> bool:
    """Whether the graph's only quantization is of stored weights (no activation quantizers)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    stored = {i.name for i in graph.initializer}
    ops = {n.op_type for n in graph.node}
    return not ops & _QUANTIZING_OPS and any(
        n.op_type == "DequantizeLinear" and n.input[0] in stored for n in graph.node
    )


def fastest_threads(
    path: Path, ctx: ServeContext, fold_weights: bool
) -> tuple[ort.InferenceSession, int, str | None]:
    """The session (``ctx.threads`` or one intra-op thread) that serves the context's inputs
    faster, its thread count, and a note when one thread won."""
    many = session(path, ctx.threads, fold_weights)
    if ctx.threads == 1:
        return many, 1, None
    one = session(path, 1, fold_weights)
    given = feeds(many, ctx.input_names, ctx.sample_inputs)
    used, note = fewer_threads(
        "onnxruntime", lambda _: many.run(None, given), lambda _: one.run(None, given), ctx
    )
    return (one if used == 1 else many), used, note


def serve_onnx(artifact: Path, ctx: ServeContext) -> Prepared:
    """Serve an ONNX file as it stands (threads chosen, weight-only graphs folded)."""
    names = ctx.input_names
    sess, used, note = fastest_threads(artifact, ctx, weight_only(artifact))

    def engine(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.from_numpy(sess.run(None, feeds(sess, names, inputs))[0])

    return Prepared(engine, artifact, notes=(note,) if note else (), threads=used)


@register_runtime("onnxruntime", "ONNX Runtime, CPU execution provider", takes_graph=True)
def _prepare(state: ModelState, stem: Path, ctx: ServeContext) -> Prepared:
    artifact = stem.with_suffix(".onnx")
    if state.artifact is not None and state.artifact.suffix in (".xml", ".pt2"):
        raise StepError(
            f"This model is {state.artifact}, which ONNX Runtime cannot load: an OpenVINO IR "
            "runs on openvino, a .pt2 program on eager or compile."
        )
    if state.artifact is not None:
        if state.artifact.resolve() != artifact.resolve():
            copy_file(state.artifact, artifact)
    else:
        export_onnx(state.module, ctx.sample_inputs, ctx.input_names, artifact, ctx.check_inputs)
    return serve_onnx(artifact, ctx)
