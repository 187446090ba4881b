"""Third-party chatter kept off a user's screen, unless ``SLIMKIT_VERBOSE=1`` asks for it.

Importing slimkit and quantizing a model used to print torch.onnx's "torchvision is not
installed" warnings, torch's pytree deprecation notes, torchao's kernel libraries it cannot load
on this CPU, a torch.compile caching warning and, through ONNX Runtime's ``basicConfig`` at
import, every library's INFO lines: none of them about the user's model. Only these named
loggers and that one warning are silenced; the user's own logging configuration is left alone.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from types import ModuleType

_NOISY = {
    "torch.onnx": logging.ERROR,
    "torch.utils._pytree": logging.ERROR,
    "torchao": logging.ERROR,
    "onnx_ir": logging.WARNING,
    "onnxscript": logging.WARNING,
}


def quiet_third_party() -> None:
    """Raise the level of the libraries' noisy loggers (nothing under ``SLIMKIT_VERBOSE=1``)."""
    if os.environ.get("SLIMKIT_VERBOSE", "") not in ("", "0"):
        return
    for name, level in _NOISY.items():
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, level))
    # torch asks tensor subclasses (torchao's Int8Tensor) for a cache hash they do not have yet
    warnings.filterwarnings("ignore", message=".*_stable_hash_for_caching")


def import_quietly(name: str) -> ModuleType:
    """Import module ``name`` and undo what its import did to the root logger: ONNX Runtime's
    ``matmul_nbits_quantizer`` calls ``logging.basicConfig(level=INFO)`` at import, which would
    print every INFO line of every library (slimkit's too) in the user's process."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return importlib.import_module(name)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
