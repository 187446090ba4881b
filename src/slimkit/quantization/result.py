"""What every quantization handler returns, whatever the backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from slimkit.export.onnx import Agreement
from slimkit.state import ModelState


@dataclass
class QuantizedModel:
    """A quantized model and where it runs.

    ``module`` is what PyTorch runtimes serve (quantized in place, or a converted PT2E graph);
    for ONNX backends it stays the float source. ``artifact`` is the file the runtime loads when
    the handler wrote one (ONNX graph, ``.pt2`` exported program).
    ``float_layers`` names the weight layers the backend left in float: never silently.
    ``agreement`` is how closely an exported graph follows the float model on held-out inputs.
    """

    module: nn.Module
    runtime: str
    quantized_layers: int
    float_layers: list[str] = field(default_factory=list)
    artifact: Path | None = None
    agreement: Agreement | None = None

    def serving_state(self) -> ModelState:
        """The state its runtime serves (what :func:`slimkit.evaluate` measures)."""
        return ModelState(self.module, self.runtime, artifact=self.artifact)
