"""Per-layer sensitivity for a search, measured once per baseline and kept in slimkit's cache.

The curves (validation accuracy with one layer at a time magnitude-pruned) depend only on the
baseline's weights, the validation examples scored, the layers and levels measured and the code
that scores them, so they are keyed by a hash of exactly those. A second search of the same
baseline (another objective, budget or backend) starts its trials at once (docs/measurements.md,
"Solar-cell transfer", has what the pass costs on Lite0). A cache entry that does not parse, or
lacks a layer, is a miss.
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib import metadata
from typing import Any

import torch
from torch import nn

from slimkit._digest import state_tensors, update_tensors
from slimkit._io import write_json
from slimkit._signing import cache_dir, usable_cache_dir
from slimkit.data.bundle import ArrayDataset
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.models.layout import channels_last
from slimkit.pruning.sensitivity import LayerSensitivity, layer_sensitivity

RATIOS = (0.5, 0.8)  # the levels each layer is measured at (and allocate chooses from)


def layer_curves(
    model: nn.Module, val: ArrayDataset, layers: dict[str, int], *, cache: bool = True
) -> tuple[list[LayerSensitivity], bool]:
    """Each of ``layers`` (name: size) magnitude-pruned alone to each of :data:`RATIOS`,
    scored on ``val``; and whether the curves came from the cache (``cache``: look there first,
    and keep what is measured)."""
    key = _key(model, val, layers) if cache else None
    if key is not None:
        found = _load(key, layers)
        if found is not None:
            return found, True

    def evaluate(pruned: nn.Module) -> float:
        with torch.inference_mode():
            return accuracy(*predict(lambda x: pruned(*x), val.batches(64)))

    # the pruned copies are deep copies of the model, so they score channels-last too
    with channels_last(model, tuple(x[:2] for x in val.inputs)):
        curves = layer_sensitivity(model, evaluate, ratios=RATIOS, layers=layers)
    if key is not None:
        _store(key, curves)
    return curves, False


def _key(model: nn.Module, val: ArrayDataset, layers: dict[str, int]) -> str:
    digest = hashlib.sha256()
    examples = (t for inputs, labels in val.batches(64) for t in (*inputs, labels))
    update_tensors(digest, (*state_tensors(model), *examples))
    about = {
        "layers": sorted(layers),
        "ratios": RATIOS,
        "slimkit": metadata.version("slimkit"),
        "torch": torch.__version__,
    }
    digest.update(json.dumps(about, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _load(key: str, layers: dict[str, int]) -> list[LayerSensitivity] | None:
    path = cache_dir() / "sensitivity" / f"{key}.json"
    try:
        entry: Any = json.loads(path.read_text(encoding="utf-8"))
        baseline = entry["baseline"]
        curves = entry["curves"]
        found = [
            LayerSensitivity(
                name, size, _score(baseline), {r: _score(curves[name][str(r)]) for r in RATIOS}
            )
            for name, size in layers.items()
        ]
    except (OSError, ValueError, RecursionError, KeyError, TypeError):
        return None
    return found


def _score(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a score: {value!r}")
    return float(value)


def _store(key: str, curves: list[LayerSensitivity]) -> None:
    entry = {
        "baseline": curves[0].baseline if curves else 0.0,
        "curves": {c.layer: {str(r): c.metric[r] for r in RATIOS} for c in curves},
    }
    write_json(usable_cache_dir() / "sensitivity" / f"{key}.json", entry)
