"""Baselines cached by what produced them, so a second run skips retraining.

The key hashes everything that determines the trained weights: the model source and kwargs,
the data spec, the training config, and the slimkit and torch versions. Change any and the
baseline is retrained.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Any

import torch

from slimkit._io import write_json
from slimkit._signing import cache_dir, usable_cache_dir
from slimkit.errors import ModelLoadError
from slimkit.models.arch import Arch
from slimkit.models.persist import load_weights_into, save_model


def baseline_key(arch: Arch, data: dict[str, Any], train: dict[str, Any]) -> str:
    payload = {
        "arch": arch.to_dict(),
        "data": data,
        "train": train,
        "slimkit": metadata.version("slimkit"),
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def load_cached(model: torch.nn.Module, key: str) -> dict[str, Any] | None:
    """Load the cached weights for ``key`` into ``model``; return their training history."""
    weights, info = (
        cache_dir() / "baselines" / f"{key}.safetensors",
        cache_dir() / "baselines" / f"{key}.json",
    )
    if not (weights.is_file() and info.is_file()):
        return None
    try:  # a damaged entry is a cache miss: the baseline is trained again
        history = json.loads(info.read_text(encoding="utf-8"))
        if not isinstance(history, dict) or not isinstance(history.get("loss"), list):
            return None
        load_weights_into(model, weights)
    except (OSError, ValueError, RecursionError, ModelLoadError):
        return None
    return history


def store(model: torch.nn.Module, key: str, arch: Arch, history: dict[str, Any]) -> None:
    folder = usable_cache_dir() / "baselines"
    save_model(model, folder / f"{key}.safetensors", arch)
    write_json(folder / f"{key}.json", history)
