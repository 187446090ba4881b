"""Runtimes that serve a model: PyTorch eager, torch.compile, ONNX Runtime, OpenVINO.

Each runtime turns a :class:`~slimkit.state.ModelState` into an *engine* (a callable from a
tuple of input tensors to logits) plus the artifact file it loads, whose size is the model's
size on disk. Latency is always measured through these engines, so a figure belongs to the
runtime that would serve the model.
"""

from slimkit.runtimes import eager, onnxruntime, openvino  # noqa: F401  (register the runtimes)
from slimkit.runtimes.base import (
    RUNTIMES,
    Engine,
    Prepared,
    Runtime,
    ServeContext,
    prepare,
    register_runtime,
)

__all__ = [
    "RUNTIMES",
    "Engine",
    "Prepared",
    "Runtime",
    "ServeContext",
    "prepare",
    "register_runtime",
]
