"""How ``prune`` finds a method: one handler per config type, registered where the method is
written, fed what its config declares it needs (:meth:`PruneConfig.needs`).

A new method adds a config (with its ``needs``) and a handler decorated with
``@register_pruner(ItsConfig)``; nothing else branches on the method. The ``prune`` verb and
the ``prune`` step both build a :class:`PruneInputs` (from a data set where one is given) and
call :func:`apply_pruner`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from slimkit.data.bundle import Batch, DataBundle
from slimkit.errors import StepError
from slimkit.layers import check_names_exist
from slimkit.progress import SILENT, Progress
from slimkit.pruning.configs import Need, PruneConfig

TRAIN_BATCH = 64  # token counts and gradients are read in batches of this size


@dataclass
class PruneInputs:
    """What a handler may use besides the model and its config. ``notes`` collects what the
    handler found worth reporting (an allocation, a ramp, what a trim left out)."""

    example_inputs: tuple[torch.Tensor, ...] | None = None
    batches: Iterable[Batch] | None = None
    between: Callable[[nn.Module], None] | None = None  # fine-tuning between iterative rounds
    data: DataBundle | None = None
    tokenizer: Any = None
    progress: Progress = SILENT
    notes: list[str] = field(default_factory=list)

    def filled_from(self, data: DataBundle, config: PruneConfig) -> PruneInputs:
        """These inputs, with what ``config`` needs and was not given taken from ``data``."""
        needs = config.needs()
        between = self.between
        schedule = config.between_rounds
        if between is None and Need.BETWEEN in needs and schedule is not None:
            from slimkit.training.trainer import train

            def between(model: nn.Module) -> None:
                train(model, data, schedule, progress=self.progress)

        wants_batches = Need.BATCHES in needs and self.batches is None
        return replace(
            self,
            example_inputs=self.example_inputs or data.sample_inputs(1),
            batches=data.train.batches(TRAIN_BATCH) if wants_batches else self.batches,
            between=between,
            data=data,
        )


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


def apply_pruner(
    model: nn.Module, config: PruneConfig, inputs: PruneInputs
) -> tuple[nn.Module, list[str]]:
    """A pruned copy of ``model`` and the handler's notes; ``model`` is never modified."""
    handler = handler_for(type(config))
    missing = sorted(n.value for n in config.needs() if getattr(inputs, n.value) is None)
    if missing:
        raise StepError(
            f"{config.method} pruning needs {' and '.join(missing)} (structured methods trace "
            "the model on example inputs; token counts and gradients come from training "
            "batches; iterative rounds fine-tune between them; gradual and sensitivity-scoped "
            "pruning train or measure on the data set): pass "
            f"{', '.join(f'{m}=...' for m in missing)}, or the data set (data=...)."
        )
    check_names_exist(model, config.ignore, f"{config.method} pruning's ignore")
    for name in ("targets", "overrides"):
        check_names_exist(
            model, list(getattr(config, name, ())), f"{config.method} pruning's {name}"
        )
    given = replace(inputs, notes=[])
    pruned = handler(copy.deepcopy(model), config, given)
    return pruned, given.notes
