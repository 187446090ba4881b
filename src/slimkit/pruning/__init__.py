"""Pruning: ``prune(model, config)`` with one config type per method.

>>> import slimkit
>>> from slimkit.pruning import MagnitudeConfig
>>> net = slimkit.build_model("resnet-mini", num_classes=10, in_channels=1)
>>> pruned = slimkit.prune(net, MagnitudeConfig(sparsity=0.5))  # net itself is unchanged
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from slimkit.data.bundle import Batch
from slimkit.errors import StepError
from slimkit.layers import check_names_exist
from slimkit.pruning.configs import (
    PRUNE_METHODS,
    ChannelConfig,
    FfnConfig,
    HeadsConfig,
    Importance,
    MagnitudeConfig,
    NMConfig,
    PruneConfig,
    RandomConfig,
    Scope,
    VocabConfig,
)
from slimkit.pruning.structured import channel_prune
from slimkit.pruning.transformer import prune_ffn, prune_heads
from slimkit.pruning.unstructured import magnitude_prune, nm_prune
from slimkit.pruning.vocab import trim_vocab


def _unstructured(handler: Callable[[nn.Module, Any], nn.Module]) -> Callable[..., nn.Module]:
    return lambda model, config, example_inputs, batches, between: handler(model, config)


# config type -> handler; a new method adds a config and a row, not a branch.
_HANDLERS: dict[type[PruneConfig], Callable[..., nn.Module]] = {
    MagnitudeConfig: _unstructured(magnitude_prune),
    RandomConfig: _unstructured(magnitude_prune),
    NMConfig: _unstructured(nm_prune),
    HeadsConfig: _unstructured(prune_heads),
    FfnConfig: _unstructured(prune_ffn),
    ChannelConfig: channel_prune,
    VocabConfig: lambda model, config, example_inputs, batches, between: trim_vocab(
        model, config, batches
    ),
}


def prune(
    model: nn.Module,
    config: PruneConfig,
    example_inputs: tuple[torch.Tensor, ...] | None = None,
    *,
    batches: Iterable[Batch] | None = None,
    between: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """Return a pruned copy of ``model``; the input model is never modified, even on error.

    Structured methods trace the model, so they need ``example_inputs`` (one batch of inputs);
    ``taylor`` importance needs ``batches`` of ``(inputs, labels)``; iterative channel pruning
    calls ``between(model)`` (the fine-tuning) after each round but the last.
    """
    handler = _HANDLERS.get(type(config))
    if handler is None:
        raise StepError(f"No pruning handler for {type(config).__name__}.")
    if isinstance(config, MagnitudeConfig) and config.scope is Scope.SENSITIVITY:
        raise StepError(
            "scope: sensitivity measures each layer on validation data: use the prune step, or "
            "slimkit.pruning.sensitivity.allocate and pass the result as overrides."
        )
    if isinstance(config, MagnitudeConfig) and config.gradual is not None:
        raise StepError(
            "gradual pruning fine-tunes while it prunes: call "
            "slimkit.pruning.schedules.gradual_prune(model, config, data), or use the prune step."
        )
    if example_inputs is None and isinstance(config, ChannelConfig):
        raise StepError("Channel pruning traces the model: pass example_inputs=(batch,).")
    if batches is None and isinstance(config, VocabConfig):
        raise StepError("Vocabulary trimming counts tokens: pass batches of training data.")
    check_names_exist(model, config.ignore, f"{config.method} pruning's ignore")
    for field in ("targets", "overrides"):
        check_names_exist(
            model, list(getattr(config, field, ())), f"{config.method} pruning's {field}"
        )
    return handler(copy.deepcopy(model), config, example_inputs, batches, between)


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
    "FfnConfig",
    "HeadsConfig",
    "Importance",
    "MagnitudeConfig",
    "NMConfig",
    "PruneConfig",
    "RandomConfig",
    "Scope",
    "VocabConfig",
    "parse_prune_config",
    "prune",
]
