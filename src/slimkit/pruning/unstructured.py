"""Unstructured magnitude pruning: exact zeros where weights are smallest."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimkit.errors import StepError, few
from slimkit.layers import matches, select
from slimkit.pruning.configs import MagnitudeConfig, NMConfig, RandomConfig, Scope
from slimkit.pruning.handlers import PruneInputs, register_pruner


def magnitude_prune(model: nn.Module, config: MagnitudeConfig) -> nn.Module:
    """Zero the smallest |weights| of the targeted layers, in place.

    Global scope ranks all targeted weights together; layer scope prunes each layer to the same
    sparsity; ``overrides`` give matching layers their own sparsity (layer-wise). A
    :class:`RandomConfig` ranks by seeded random scores instead: the baseline to beat. Ties at
    the threshold are broken by position, so each sparsity is exact.
    """
    layers = [
        (name, w)
        for name, m in select(model, config.targets, config.ignore)
        if isinstance(w := getattr(m, "weight", None), nn.Parameter)
    ]
    if not layers:
        raise StepError(
            f"{config.method} pruning found no layers matching targets {list(config.targets)} "
            f"(ignoring {list(config.ignore)}). Name layers by type (Linear), name or re:regex."
        )
    generator = (
        torch.Generator().manual_seed(config.seed) if isinstance(config, RandomConfig) else None
    )

    def scores(w: torch.Tensor) -> torch.Tensor:
        if generator is not None:
            return torch.rand(w.numel(), generator=generator)
        return w.detach().abs().flatten()

    overridden = {  # the last matching pattern wins, as in the recipe's order
        name: sparsity
        for name, _ in layers
        for pattern, sparsity in config.overrides.items()
        if matches(name, model.get_submodule(name), pattern)
    }
    rest = [w for name, w in layers if name not in overridden]
    with torch.no_grad():
        for name, w in layers:
            if name in overridden:
                _zero_smallest(scores(w), [w], overridden[name])
        if rest and config.scope is Scope.GLOBAL:
            _zero_smallest(torch.cat([scores(w) for w in rest]), rest, config.sparsity)
        elif rest:
            for w in rest:
                _zero_smallest(scores(w), [w], config.sparsity)
    return model


def nm_layers(
    model: nn.Module, config: NMConfig
) -> tuple[list[tuple[str, nn.Linear | nn.Conv2d]], list[str]]:
    """The targeted layers n:m can group (input size a multiple of ``m``), and the names of
    those it cannot."""
    targeted: list[tuple[str, nn.Linear | nn.Conv2d]] = [
        (n, m)
        for n, m in select(model, config.targets, config.ignore)
        if isinstance(m, nn.Linear | nn.Conv2d)
    ]
    fits = [(n, m) for n, m in targeted if m.weight.shape[1] % config.m == 0]
    return fits, [n for n, m in targeted if m.weight.shape[1] % config.m]


def nm_prune(model: nn.Module, config: NMConfig) -> nn.Module:
    """Keep the ``n`` largest of every ``m`` consecutive weights along each layer's input dim.

    Conv kernels are grouped along input channels at each kernel position, the layout 2:4
    sparse kernels use. Layers whose input size is not a multiple of ``m`` stay dense (see
    :func:`nm_layers`); none fitting at all is an error.
    """
    layers, unfit = nm_layers(model, config)
    if not layers:
        raise StepError(
            f"n:m pruning found no Linear or Conv2d layer matching {list(config.targets)} whose "
            f"input size is a multiple of m={config.m}"
            + (f" ({', '.join(unfit[:4])} are not)" if unfit else "")
            + "; choose another m or other targets."
        )
    with torch.no_grad():
        for _, layer in layers:
            w = layer.weight
            # input dim last and contiguous: Linear (out, in); Conv (out, kh, kw, in)
            grouped = w.permute(0, 2, 3, 1) if w.dim() == 4 else w
            groups = grouped.reshape(-1, config.m)
            keep = groups.abs().topk(config.n, dim=1).indices
            mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True)
            mask = mask.reshape(grouped.shape)
            w.mul_(mask.permute(0, 3, 1, 2) if w.dim() == 4 else mask)
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


@register_pruner(NMConfig)
def _n_m(model: nn.Module, config: NMConfig, given: PruneInputs) -> nn.Module:
    _, unfit = nm_layers(model, config)
    if unfit:
        given.notes.append(f"left dense, input size not a multiple of m={config.m}: {few(unfit)}")
    return nm_prune(model, config)
