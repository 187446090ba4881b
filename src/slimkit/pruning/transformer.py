"""Structured pruning of transformer encoders: whole attention heads and FFN neurons.

Works on the BERT family's layout (``attention.self.{query,key,value}``,
``attention.output.dense``, ``intermediate.dense``, ``output.dense``), which MiniLM shares.
Removing a head slices its rows out of the three projections and its columns out of the
output projection; removing an FFN neuron slices a row of the up-projection and a column of
the down-projection. The model gets physically smaller: every runtime runs it faster.
transformers 5 has no config for non-uniform heads, so pruned encoders load through slimkit's
manifest (Linear shapes); :func:`~slimkit.models.surgery.sync_head_counts` restores the
head-count attributes.
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.errors import StepError
from slimkit.models.surgery import attention_blocks, ffn_blocks, sync_head_counts
from slimkit.pruning.configs import FfnConfig, HeadsConfig, Importance
from slimkit.pruning.handlers import PruneInputs, register_pruner


def _norm(t: torch.Tensor, importance: Importance, dim: int | tuple[int, ...]) -> torch.Tensor:
    p = 1 if importance is Importance.L1 else 2
    return t.detach().abs().pow(p).sum(dim=dim)


def _slice(linear: nn.Linear, keep: torch.Tensor, rows: bool) -> nn.Linear:
    """A new Linear with only the ``keep`` output rows (or input columns)."""
    w = linear.weight.detach()
    weight = w[keep] if rows else w[:, keep]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias[keep] if rows else linear.bias)
    return new


def _keep(scores: torch.Tensor, ratio: float, round_to: int = 1) -> torch.Tensor:
    n = scores.numel()
    kept = max(round_to, n - int(n * ratio))
    kept = min(n, kept - kept % round_to) if round_to > 1 else kept
    return scores.argsort(descending=True)[:kept].sort().values


def prune_heads(model: nn.Module, config: HeadsConfig) -> nn.Module:
    """Remove ``config.ratio`` of the attention heads of every layer (least important first)."""
    blocks = attention_blocks(model)
    if not blocks:
        raise StepError(
            "method: heads needs BERT-style attention (query/key/value + output.dense)."
        )
    for name, attn, out in blocks:
        size: int = attn.attention_head_size
        heads = attn.query.out_features // size
        per_head = _norm(
            out.weight.view(out.out_features, heads, size), config.importance, dim=(0, 2)
        )
        for projection in (attn.query, attn.key, attn.value):
            per_head = per_head + _norm(
                projection.weight.view(heads, size, -1), config.importance, dim=(1, 2)
            )
        kept_heads = _keep(per_head, config.ratio)
        if kept_heads.numel() == heads:
            continue
        rows = (kept_heads[:, None] * size + torch.arange(size)).flatten()
        for p in ("query", "key", "value"):
            setattr(attn, p, _slice(getattr(attn, p), rows, rows=True))
        model.get_submodule(f"{name}.output").dense = _slice(out, rows, rows=False)
    sync_head_counts(model)
    return model


def prune_ffn(model: nn.Module, config: FfnConfig) -> nn.Module:
    """Remove ``config.ratio`` of the feed-forward neurons of every layer."""
    blocks = ffn_blocks(model)
    if not blocks:
        raise StepError("method: ffn needs BERT-style feed-forward blocks (intermediate.dense).")
    for name, up, down in blocks:
        scores = _norm(up.weight, config.importance, dim=1) + _norm(
            down.weight, config.importance, dim=0
        )
        keep = _keep(scores, config.ratio, config.round_to or 1)
        model.get_submodule(f"{name}.intermediate").dense = _slice(up, keep, rows=True)
        model.get_submodule(f"{name}.output").dense = _slice(down, keep, rows=False)
    return model


@register_pruner(HeadsConfig)
def _heads(model: nn.Module, config: HeadsConfig, given: PruneInputs) -> nn.Module:
    return prune_heads(model, config)


@register_pruner(FfnConfig)
def _ffn(model: nn.Module, config: FfnConfig, given: PruneInputs) -> nn.Module:
    return prune_ffn(model, config)
