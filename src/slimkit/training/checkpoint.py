"""Training checkpoints: written atomically each epoch, read back without pickle.

A checkpoint holds everything the next epoch depends on: weights, optimizer and schedule
state, the best weights so far, the history and the random-number state. A run killed at any
moment leaves the previous complete checkpoint, and a resumed run continues as if it had never
stopped. Loading uses ``torch.load(weights_only=True)``: a checkpoint is tensors and plain data,
never code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from slimkit._io import atomic_path
from slimkit.errors import ModelLoadError

FILE = "last.ckpt"


def save(folder: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``folder/last.ckpt``, replacing the previous one atomically."""
    path = folder / FILE
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load(folder: Path) -> dict[str, Any] | None:
    """The checkpoint in ``folder``, or None if there is none yet."""
    path = folder / FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # unpickling errors come in many types
        raise damaged(folder, err) from None
    if not isinstance(state, dict):
        raise damaged(folder, TypeError(f"it holds {type(state).__name__}, not a checkpoint"))
    return state


def damaged(folder: Path, err: Exception) -> ModelLoadError:
    """The error for an epoch checkpoint that cannot be resumed from."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    return ModelLoadError(
        f"Cannot resume from {folder / FILE}: {first}. Delete it to start that step over."
    )
