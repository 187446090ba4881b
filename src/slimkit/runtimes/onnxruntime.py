"""ONNX Runtime on the CPU execution provider. Artifact: the ``.onnx`` file it loads."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import torch

from slimkit._io import copy_file
from slimkit.export.onnx import export_onnx
from slimkit.runtimes.base import RUNTIMES, Prepared, Runtime, ServeContext
from slimkit.state import ModelState


def session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads, like torch.set_num_threads(threads)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _prepare(state: ModelState, stem: Path, ctx: ServeContext) -> Prepared:
    artifact = stem.with_suffix(".onnx")
    if state.artifact is not None:
        if state.artifact.resolve() != artifact.resolve():
            copy_file(state.artifact, artifact)
    else:
        export_onnx(state.module, ctx.sample_inputs, ctx.input_names, artifact, ctx.check_inputs)
    sess = session(artifact, ctx.threads)
    names = ctx.input_names

    def engine(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        feeds = {n: x.numpy() for n, x in zip(names, inputs, strict=True)}
        return torch.from_numpy(sess.run(None, feeds)[0])

    return Prepared(engine, artifact)


RUNTIMES.add(
    "onnxruntime", Runtime("onnxruntime", "ONNX Runtime, CPU execution provider", _prepare)
)
