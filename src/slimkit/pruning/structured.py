"""Structured channel pruning on torch-pruning's dependency graph.

torch-pruning traces the model once and groups every layer that must shrink together (a conv's
filters, the next layer's input channels, the BatchNorm between, both sides of a residual add),
so the pruned network stays consistent and is a smaller dense model.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from slimkit.data.bundle import Batch
from slimkit.errors import StepError
from slimkit.layers import output_layers, select
from slimkit.pruning.configs import ChannelConfig, Importance
from slimkit.pruning.handlers import PruneInputs, register_pruner

_IMPORTANCE = {
    Importance.L1: lambda: tp.importance.MagnitudeImportance(p=1),
    Importance.L2: lambda: tp.importance.MagnitudeImportance(p=2),
    Importance.BN_SCALE: lambda: tp.importance.BNScaleImportance(),
    Importance.TAYLOR: lambda: tp.importance.TaylorImportance(),
    Importance.RANDOM: lambda: tp.importance.RandomImportance(),
}


def channel_prune(
    model: nn.Module,
    config: ChannelConfig,
    example_inputs: tuple[torch.Tensor, ...],
    batches: Iterable[Batch] | None = None,
    between: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """Remove ``config.ratio`` of the channels of every prunable group, in place.

    With ``iterations > 1`` the ratio is reached in equal rounds with ``between(model)`` (the
    fine-tuning) after each round but the last. ``taylor`` importance needs ``batches`` of
    ``(inputs, labels)`` to accumulate gradients from.
    """
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise StepError(
            "Channel pruning needs convolutional layers; this model has none. "
            "Use method: magnitude or n:m."
        )
    if config.importance is Importance.TAYLOR and batches is None:
        raise StepError("taylor importance needs batches of training data for its gradients.")
    if config.iterations > 1 and between is None:
        raise StepError("iterative channel pruning needs between=f(model) to fine-tune.")
    if config.importance is Importance.BN_SCALE and not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
    ):
        raise StepError(
            "bn-scale importance ranks channels by BatchNorm scales; this model has none."
        )
    ignored = output_layers(model) + [m for _, m in select(model, list(config.ignore))]
    shares = _shares(model, config)
    _check_channels_remain(model, config, ignored, shares)
    try:
        pruner = tp.pruner.MetaPruner(
            model,
            example_inputs=example_inputs,
            importance=_IMPORTANCE[config.importance](),
            pruning_ratio=config.ratio,
            pruning_ratio_dict=shares,
            iterative_steps=config.iterations,
            ignored_layers=ignored,
            round_to=config.round_to,
        )
    except Exception as err:  # tracing failures surface as many exception types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StepError(
            f"torch-pruning cannot trace {type(model).__name__} to find which layers prune "
            f"together: {first}. Add the layers it stumbles on to ignore, or use method: magnitude."
        ) from None
    for round_ in range(config.iterations):
        if config.importance is Importance.TAYLOR:
            assert batches is not None
            _accumulate_gradients(model, itertools.islice(batches, config.taylor_batches))
        pruner.step()
        model.zero_grad(set_to_none=True)
        if between is not None and round_ < config.iterations - 1:
            between(model)
    return model.eval()


def group_leaders(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    sizes: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """The convolution that leads each of torch-pruning's channel groups, with the weights of
    the layers whose filters the group removes (or their ``sizes``, by layer name: their MACs,
    say): one layer per group, since a share given to any layer of a group (``overrides``)
    applies to the whole group. The figures partition the network's convolutions (the output
    layer's excepted), so shares allocated over groups reach an overall share of them."""
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    names = {m: n for n, m in model.named_modules()}
    size = (lambda m: sizes[names[m]]) if sizes is not None else (lambda m: m.weight.numel())
    leaders = {}
    ignored = output_layers(model)
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d]):
        losing_filters = {
            dep.target.module
            for dep, _ in group
            if isinstance(dep.target.module, nn.Conv2d | nn.Linear)
            and graph.is_out_channel_pruning_fn(dep.handler)
        }
        leaders[names[group[0].dep.target.module]] = sum(size(m) for m in losing_filters)
    return leaders


def _shares(model: nn.Module, config: ChannelConfig) -> dict[nn.Module, float]:
    """Each overridden layer's share (torch-pruning applies it to the group the layer leads)."""
    return {m: share for p, share in config.overrides.items() for _, m in select(model, [p])}


def _check_channels_remain(
    model: nn.Module,
    config: ChannelConfig,
    ignored: list[nn.Module],
    shares: dict[nn.Module, float],
) -> None:
    """Refuse settings that would leave a layer with no channels (``round_to`` above its width)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m not in ignored:
            kept = m.out_channels - int(m.out_channels * shares.get(m, config.ratio))
            if config.round_to and kept < config.round_to and m.out_channels < config.round_to:
                raise StepError(
                    f"Layer {name!r} has {m.out_channels} channels; round_to={config.round_to} "
                    "would leave it none. Lower round_to or add the layer to ignore."
                )


def _accumulate_gradients(model: nn.Module, batches: Iterable[Batch]) -> None:
    model.eval()  # BatchNorm statistics stay put: only gradients are wanted
    model.zero_grad(set_to_none=True)
    for inputs, labels in batches:
        F.cross_entropy(model(*inputs), labels).backward()


@register_pruner(ChannelConfig)
def _channels(model: nn.Module, config: ChannelConfig, given: PruneInputs) -> nn.Module:
    assert given.example_inputs is not None  # declared in ChannelConfig.needs, checked by prune
    return channel_prune(model, config, given.example_inputs, given.batches, given.between)
