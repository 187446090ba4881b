"""Pruning: ``prune(model, config)`` with one config type per method.

>>> import slimkit
>>> from slimkit.pruning import MagnitudeConfig
>>> net = slimkit.build_model("resnet-mini", num_classes=10, in_channels=1)
>>> _ = slimkit.prune(net, MagnitudeConfig(sparsity=0.5))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from slimkit.errors import StepError
from slimkit.pruning.configs import (
    PRUNE_METHODS,
    ChannelConfig,
    Importance,
    MagnitudeConfig,
    PruneConfig,
    Scope,
)
from slimkit.pruning.structured import channel_prune
from slimkit.pruning.unstructured import magnitude_prune

_HANDLERS: dict[type[PruneConfig], Callable[..., nn.Module]] = {
    MagnitudeConfig: lambda model, config, example_inputs: magnitude_prune(model, config),
    ChannelConfig: channel_prune,
}


def prune(
    model: nn.Module, config: PruneConfig, example_inputs: tuple[torch.Tensor, ...] | None = None
) -> nn.Module:
    """Prune ``model`` in place as ``config`` says and return it.

    Structured methods trace the model, so they need ``example_inputs`` (one batch of inputs).
    """
    handler = _HANDLERS.get(type(config))
    if handler is None:
        raise StepError(f"No pruning handler for {type(config).__name__}.")
    if example_inputs is None and isinstance(config, ChannelConfig):
        raise StepError("Channel pruning traces the model: pass example_inputs=(batch,).")
    return handler(model, config, example_inputs)


def parse_prune_config(data: dict[str, Any], where: str) -> PruneConfig:
    """Pick the config class by ``method`` and validate ``data`` against it."""
    from slimkit.errors import RecipeError

    method = str(data.get("method"))
    if method not in PRUNE_METHODS:
        raise RecipeError(f"'{where}.method': " + PRUNE_METHODS.unknown_message(method))
    return PRUNE_METHODS.get(method).from_dict(data, where)


__all__ = [
    "PRUNE_METHODS",
    "ChannelConfig",
    "Importance",
    "MagnitudeConfig",
    "PruneConfig",
    "Scope",
    "parse_prune_config",
    "prune",
]
