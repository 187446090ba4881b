"""PyTorch runtimes: eager and torch.compile (inductor). Artifact: safetensors + manifest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from slimkit._io import copy_file
from slimkit.data.bundle import Inputs
from slimkit.errors import StepError
from slimkit.models.persist import save_model
from slimkit.runtimes.base import (
    Engine,
    Prepared,
    ServeContext,
    fewer_threads,
    in_dtype,
    param_dtype,
    register_runtime,
)
from slimkit.state import ModelState


def _torch_artifact(state: ModelState, stem: Path, ctx: ServeContext) -> Path:
    """The file PyTorch loads: a step's exported program (.pt2), else safetensors + manifest."""
    if state.artifact is None:
        return save_model(state.module, stem.with_suffix(".safetensors"), ctx.arch)
    if state.artifact.suffix != ".pt2":
        raise StepError(
            f"This model is the graph {state.artifact}, which {state.runtime} cannot run: serve "
            "it on onnxruntime (an .onnx graph) or openvino (.onnx or an IR .xml)."
        )
    target = stem.with_suffix(".pt2")
    if state.artifact.resolve() != target.resolve():
        copy_file(state.artifact, target)
    return target


def _serve(module: Callable[..., torch.Tensor], dtype: torch.dtype) -> Engine:
    """Feed float inputs in the model's own precision (fp16/bf16 models) and return fp32 logits."""

    def engine(inputs: Inputs) -> torch.Tensor:
        return module(*in_dtype(inputs, dtype)).float()

    return engine


@register_runtime("eager", "PyTorch eager mode (fp32 unless the step changed it)")
def _eager(state: ModelState, stem: Path, ctx: ServeContext) -> Prepared:
    """Eager PyTorch on the run's threads, or on one where that is faster for this model."""
    artifact = _torch_artifact(state, stem, ctx)
    module = state.module
    module.eval()  # not chained: exported graphs' eval() does not return the module
    engine = _serve(module, param_dtype(module))
    used, note = fewer_threads("eager", engine, engine, ctx)
    return Prepared(engine, artifact, notes=(note,) if note else (), threads=used)


@register_runtime("compile", "torch.compile with the inductor backend")
def _compiled(state: ModelState, stem: Path, ctx: ServeContext) -> Prepared:
    artifact = _torch_artifact(state, stem, ctx)
    # dynamic=False: one graph per batch shape, specialised like a serving deployment would be.
    state.module.eval()
    compiled = torch.compile(state.module, dynamic=False)
    return Prepared(_serve(compiled, param_dtype(state.module)), artifact)
