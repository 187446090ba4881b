"""What every quantization handler returns, whatever the backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn


@dataclass
class QuantizedModel:
    """A quantized model and where it runs.

    ``module`` is what PyTorch runtimes serve (quantized in place for torch backends); for ONNX
    backends it stays the float source and ``onnx_path`` holds the quantized graph.
    ``float_layers`` names the weight layers the backend left in float: never silently.
    """

    module: nn.Module
    runtime: str
    quantized_layers: int
    float_layers: list[str] = field(default_factory=list)
    onnx_path: Path | None = None
