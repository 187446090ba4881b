"""Pruning: ``prune(model, config)`` with one config type per method.

>>> import slimkit
>>> from slimkit.pruning import MagnitudeConfig
>>> net = slimkit.build_model("resnet-mini", num_classes=10, in_channels=1)
>>> pruned = slimkit.prune(net, MagnitudeConfig(sparsity=0.5))  # net itself is unchanged
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from slimkit.data.bundle import Batch, DataBundle
from slimkit.progress import SILENT, Progress
from slimkit.pruning import magnitude, structured, transformer, vocab  # noqa: F401  (register)
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
from slimkit.pruning.handlers import PruneInputs, apply_pruner, register_pruner

log = logging.getLogger(__name__)


def prune(
    model: nn.Module,
    config: PruneConfig,
    example_inputs: tuple[torch.Tensor, ...] | None = None,
    *,
    data: DataBundle | None = None,
    batches: Iterable[Batch] | None = None,
    between: Callable[[nn.Module], None] | None = None,
    tokenizer: Any = None,
    progress: Progress = SILENT,
) -> nn.Module:
    """Return a pruned copy of ``model``; the input model is never modified, even on error.

    Given ``data`` (from :func:`slimkit.load_data`), what the method needs is taken from it as
    the ``prune`` step does. Without it: structured methods trace the model, so they need
    ``example_inputs`` (one batch of inputs); ``taylor`` importance and ``vocab`` need
    ``batches`` of ``(inputs, labels)``; iterative channel pruning calls ``between(model)``
    (the fine-tuning) after each round but the last; ``vocab`` without ``unk_token`` needs the
    ``tokenizer``. What the method noted (an allocation, a ramp) is logged.
    """
    inputs = PruneInputs(example_inputs, batches, between, tokenizer=tokenizer, progress=progress)
    if data is not None:
        inputs = inputs.filled_from(data, config)
    pruned, notes = apply_pruner(model, config, inputs)
    for note in notes:
        log.info("%s pruning: %s", config.method, note)
    return pruned


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
    "apply_pruner",
    "parse_prune_config",
    "prune",
    "register_pruner",
]
