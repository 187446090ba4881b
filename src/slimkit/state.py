"""The model as it travels through a pipeline: a PyTorch module and how it is served."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from slimkit.models.arch import Arch


def runtime_for(module: nn.Module, chosen: str | None = None) -> str:
    """The runtime ``module`` serves on: ``chosen``, else the one the module names as its own
    (``serving_runtime``: an ONNX graph's is onnxruntime), else eager PyTorch."""
    return chosen or str(getattr(module, "serving_runtime", "eager"))


@dataclass
class ModelState:
    """What a step hands to the next one.

    ``module`` is the PyTorch model (float, possibly pruned or quantized in place). ``runtime``
    names the runtime that serves it. ``artifact`` is set when a step already wrote the file that
    runtime loads and it is not a plain save of ``module``: an int8 ONNX graph, or a ``.pt2``
    exported program. Such a state can be evaluated and deployed but no longer trained.
    ``arch`` is set by a step that changed the architecture itself (a distilled student): how to
    rebuild the model from now on.
    """

    module: nn.Module
    runtime: str = "eager"
    artifact: Path | None = None
    notes: list[str] = field(default_factory=list)
    arch: Arch | None = None
