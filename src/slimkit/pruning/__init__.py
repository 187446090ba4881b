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
from slimkit.pruning import structured, transformer, unstructured, vocab  # noqa: F401  (register)
from slimkit.pruning.configs import (
    PRUNE_METHODS,
    ChannelConfig,
    FfnConfig,
    HeadsConfig,
    Importance,
    MagnitudeConfig,
    Need,
    NMConfig,
    PruneConfig,
    RandomConfig,
    Scope,
    VocabConfig,
)
from slimkit.pruning.handlers import PruneInputs, handler_for, register_pruner


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
    handler = handler_for(type(config))
    given = PruneInputs(example_inputs, batches, between)
    missing = sorted(n.value for n in config.needs() if getattr(given, n.value) is None)
    if missing:
        raise StepError(
            f"{config.method} pruning needs {' and '.join(missing)} (structured methods trace "
            "the model on example inputs; token counts and gradients come from training "
            "batches; iterative rounds fine-tune between them): pass "
            f"{', '.join(f'{m}=...' for m in missing)}, or use the prune step."
        )
    check_names_exist(model, config.ignore, f"{config.method} pruning's ignore")
    for field in ("targets", "overrides"):
        check_names_exist(
            model, list(getattr(config, field, ())), f"{config.method} pruning's {field}"
        )
    return handler(copy.deepcopy(model), config, given)


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
    "Need",
    "PruneConfig",
    "PruneInputs",
    "RandomConfig",
    "Scope",
    "VocabConfig",
    "parse_prune_config",
    "prune",
    "register_pruner",
]
