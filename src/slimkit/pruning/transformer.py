"""Structured pruning of transformers: whole attention heads and FFN neurons.

Every family in :mod:`slimkit.models.families` says where its projections are. Removing a head
slices its rows out of the query, key and value projections and its columns out of the output
projection; removing an FFN neuron slices a row of the up (and gate) projection and a column of
the down-projection. The model gets physically smaller: every runtime runs it faster.
transformers 5 has no config for non-uniform heads, so pruned encoders load through slimkit's
manifest (Linear shapes); :func:`~slimkit.models.surgery.sync_head_counts` restores the
head-count attributes.
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.models.families import require_family
from slimkit.models.surgery import replace, slice_projection, sync_head_counts, weight_rows
from slimkit.pruning.configs import FfnConfig, HeadsConfig, Importance
from slimkit.pruning.handlers import PruneInputs, register_pruner


def _norm(t: torch.Tensor, importance: Importance, dim: int | tuple[int, ...]) -> torch.Tensor:
    p = 1 if importance is Importance.L1 else 2
    return t.detach().abs().pow(p).sum(dim=dim)


def _keep(scores: torch.Tensor, ratio: float, round_to: int = 1) -> torch.Tensor:
    n = scores.numel()
    kept = max(round_to, n - int(n * ratio))
    kept = min(n, kept - kept % round_to) if round_to > 1 else kept
    return scores.argsort(descending=True)[:kept].sort().values


def _rows(units: torch.Tensor, size: int) -> torch.Tensor:
    """The output rows of the kept ``units``, each ``size`` rows wide."""
    return (units[:, None] * size + torch.arange(size)).flatten()


def prune_heads(model: nn.Module, config: HeadsConfig) -> nn.Module:
    """Remove ``config.ratio`` of the attention heads of every layer, least important first.

    Heads are ranked by the norm of their query, key and value rows and of their columns of the
    output projection. With grouped-query attention the unit is a key/value head and the query
    heads that share it, so the grouping stays intact.
    """
    found = require_family(model, "method: heads")
    attention = found.family.attention
    for layer in found.layers():
        module = layer.get_submodule(attention.module)
        size: int = getattr(module, attention.head_size)
        out = layer.get_submodule(attention.out)
        q, k, v = _projections(module, attention.fused, (attention.q, attention.k, attention.v))
        heads, kv_heads = q.shape[0] // size, k.shape[0] // size
        group = heads // kv_heads
        scores = _norm(weight_rows(out).view(-1, heads, size), config.importance, dim=(0, 2))
        scores = scores + _norm(q.view(heads, size, -1), config.importance, dim=(1, 2))
        scores = scores.view(kv_heads, group).sum(dim=1)
        for kv in (k, v):
            scores = scores + _norm(kv.view(kv_heads, size, -1), config.importance, dim=(1, 2))
        kept = _keep(scores, config.ratio)
        if kept.numel() == kv_heads:
            continue
        q_rows = _rows(kept, group * size)
        kv_rows = _rows(kept, size)
        if attention.fused:
            width = q.shape[0]
            fused = torch.cat([q_rows, kv_rows + width, kv_rows + 2 * width])
            _cut(module, attention.fused, fused, outputs=True)
        else:
            _cut(module, attention.q, q_rows, outputs=True)
            for name in (attention.k, attention.v):
                _cut(module, name, kv_rows, outputs=True)
        for name in attention.per_head:
            if isinstance(getattr(module, name, None), nn.Module):
                _cut(module, name, q_rows, outputs=True)
        _cut(layer, attention.out, q_rows, outputs=False)
    sync_head_counts(model)
    return model


def prune_ffn(model: nn.Module, config: FfnConfig) -> nn.Module:
    """Remove ``config.ratio`` of the feed-forward neurons of every layer, ranked by the norm of
    their rows in the up (and gate) projections and their column in the down projection."""
    found = require_family(model, "method: ffn")
    ffn = found.family.ffn
    for layer in found.layers():
        down = layer.get_submodule(ffn.down)
        scores = _norm(weight_rows(down), config.importance, dim=0)
        for name in ffn.up:
            scores = scores + _norm(weight_rows(layer.get_submodule(name)), config.importance, 1)
        keep = _keep(scores, config.ratio, config.round_to or 1)
        for name in ffn.up:
            _cut(layer, name, keep, outputs=True)
        _cut(layer, ffn.down, keep, outputs=False)
    return model


def _projections(
    module: nn.Module, fused: str, names: tuple[str, str, str]
) -> tuple[torch.Tensor, ...]:
    """The query, key and value weights as ``[outputs, inputs]``, split from a fused one."""
    if fused:
        return tuple(weight_rows(module.get_submodule(fused)).chunk(3, dim=0))
    return tuple(weight_rows(module.get_submodule(n)) for n in names)


def _cut(parent: nn.Module, path: str, keep: torch.Tensor, outputs: bool) -> None:
    replace(parent, path, slice_projection(parent.get_submodule(path), keep, outputs))


@register_pruner(HeadsConfig)
def _heads(model: nn.Module, config: HeadsConfig, given: PruneInputs) -> nn.Module:
    return prune_heads(model, config)


@register_pruner(FfnConfig)
def _ffn(model: nn.Module, config: FfnConfig, given: PruneInputs) -> nn.Module:
    return prune_ffn(model, config)
