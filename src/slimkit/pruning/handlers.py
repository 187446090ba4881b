"""How ``prune`` finds a method: one handler per config type, registered where the method is
written, fed what its config declares it needs (:meth:`PruneConfig.needs`).

A new method adds a config (with its ``needs``) and a handler decorated with
``@register_pruner(ItsConfig)``; nothing else branches on the method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from slimkit.data.bundle import Batch
from slimkit.errors import StepError
from slimkit.pruning.configs import PruneConfig


@dataclass(frozen=True)
class PruneInputs:
    """What a handler may use besides the model and its config."""

    example_inputs: tuple[torch.Tensor, ...] | None = None
    batches: Iterable[Batch] | None = None
    between: Callable[[nn.Module], None] | None = None  # fine-tuning between iterative rounds


Handler = Callable[[nn.Module, Any, PruneInputs], nn.Module]
_HANDLERS: dict[type[PruneConfig], Handler] = {}


def register_pruner(*configs: type[PruneConfig]) -> Callable[[Handler], Handler]:
    """Make the decorated ``handler(model, config, inputs)`` prune for these config types."""

    def decorator(handler: Handler) -> Handler:
        for config in configs:
            if config in _HANDLERS:
                raise ValueError(f"{config.__name__} already has a pruning handler")
            _HANDLERS[config] = handler
        return handler

    return decorator


def handler_for(config: type[PruneConfig]) -> Handler:
    """The handler registered for this exact config type."""
    handler = _HANDLERS.get(config)
    if handler is None:
        raise StepError(
            f"No pruning handler for {config.__name__}: register one with "
            "@slimkit.pruning.register_pruner."
        )
    return handler
