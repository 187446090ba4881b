"""Unstructured magnitude pruning: exact zeros where weights are smallest."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimkit.errors import StepError
from slimkit.layers import select
from slimkit.pruning.configs import MagnitudeConfig, Scope


def magnitude_prune(model: nn.Module, config: MagnitudeConfig) -> nn.Module:
    """Zero the ``config.sparsity`` smallest |weights| of the targeted layers, in place.

    Global scope ranks all targeted weights together; layer scope prunes each layer to the same
    sparsity. Ties at the threshold are broken by position, so the sparsity is exact.
    """
    weights = [
        w
        for _, m in select(model, config.targets, config.ignore)
        if isinstance(w := getattr(m, "weight", None), nn.Parameter)
    ]
    if not weights:
        raise StepError(
            f"Magnitude pruning found no layers matching targets {list(config.targets)} "
            f"(ignoring {list(config.ignore)}). Name layers by type (Linear), name or re:regex."
        )
    with torch.no_grad():
        if config.scope is Scope.GLOBAL:
            scores = torch.cat([w.abs().flatten() for w in weights])
            _zero_smallest(scores, weights, config.sparsity)
        else:
            for w in weights:
                _zero_smallest(w.abs().flatten(), [w], config.sparsity)
    return model


def _zero_smallest(scores: torch.Tensor, weights: Sequence[torch.Tensor], sparsity: float) -> None:
    k = round(sparsity * scores.numel())
    mask = torch.ones_like(scores, dtype=torch.bool)
    mask[torch.argsort(scores, stable=True)[:k]] = False
    offset = 0
    for w in weights:
        n = w.numel()
        w.mul_(mask[offset : offset + n].view_as(w))
        offset += n
