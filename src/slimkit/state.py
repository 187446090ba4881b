"""The model as it travels through a pipeline: a PyTorch module and how it is served."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn


@dataclass
class ModelState:
    """What a step hands to the next one.

    ``module`` is the PyTorch model (float, possibly pruned). ``backend`` names the runtime that
    serves it. ``onnx_path`` is set when the served artifact is an ONNX file that is not a plain
    export of ``module`` (an int8 graph, say); such a state can be evaluated and deployed but
    no longer trained or pruned.
    """

    module: nn.Module
    backend: str = "eager"
    onnx_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def trainable(self) -> bool:
        return self.onnx_path is None
