"""Structured channel pruning on torch-pruning's dependency graph.

torch-pruning traces the model once and groups every layer that must shrink together (a conv's
filters, the next layer's input channels, the BatchNorm between, both sides of a residual add),
so the pruned network stays consistent and is a smaller dense model.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from slimkit.errors import StepError
from slimkit.layers import select
from slimkit.pruning.configs import ChannelConfig, Importance

_IMPORTANCE = {
    Importance.L1: lambda: tp.importance.MagnitudeImportance(p=1),
    Importance.L2: lambda: tp.importance.MagnitudeImportance(p=2),
    Importance.RANDOM: lambda: tp.importance.RandomImportance(),
}


def output_layers(model: nn.Module) -> list[nn.Module]:
    """The last Linear of the model: its outputs are the classes and must all stay."""
    linears: list[nn.Module] = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1:]


def channel_prune(
    model: nn.Module, config: ChannelConfig, example_inputs: tuple[torch.Tensor, ...]
) -> nn.Module:
    """Remove ``config.ratio`` of the channels of every prunable group, in place."""
    ignored = output_layers(model) + [m for _, m in select(model, list(config.ignore))]
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise StepError(
            "Channel pruning needs convolutional layers; this model has none. "
            "Use method: magnitude, or the transformer methods (heads, ffn)."
        )
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs=example_inputs,
        importance=_IMPORTANCE[config.importance](),
        pruning_ratio=config.ratio,
        ignored_layers=ignored,
        round_to=config.round_to,
    )
    pruner.step()
    return model
