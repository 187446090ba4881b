"""Penalties that push a model toward what a compressor removes, as pure functions of a model.

- ``l1``: sum of |w| over weight matrices and kernels, which drives single weights to zero and
  prepares unstructured magnitude pruning.
- ``l2``: ``½·Σw²`` added to the loss. Under Adam this is *not* weight decay: the penalty's
  gradient is rescaled per weight by Adam's second-moment estimate, whereas decoupled weight
  decay (``TrainConfig.weight_decay``, Loshchilov & Hutter 2019) shrinks every weight by the same
  factor outside the gradient. slimkit keeps the two apart so a recipe says which it means.
- ``group_lasso``: ``Σ_g ‖w_g‖₂`` over the channel groups torch-pruning removes together (a
  conv's filter, the next layer's input slice, the BatchNorm entry between, across residual
  adds). The non-squared norm drives *whole removable groups* to zero, not scattered weights.
- ``bn_l1``: ``Σ|γ|`` over BatchNorm scales (network slimming, Liu et al. 2017); the structured
  pruner's ``bn-scale`` criterion then removes the channels whose scales went to zero.

Biases, norms' shifts and embeddings are left alone: shrinking them buys no compression.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field
from torch import nn

from slimkit.config import Config
from slimkit.layers import output_layers

_BN = nn.modules.batchnorm._BatchNorm
# A channel whose norm is below this share of its layer's largest counts as "near zero".
NEAR_ZERO = 0.01


class RegularizeConfig(Config):
    """Coefficients of the penalties added to a training loss (0 turns one off)."""

    l1: float = Field(0.0, ge=0.0, le=1.0, description="Weight of Σ|w| over weight tensors.")
    l2: float = Field(0.0, ge=0.0, le=1.0, description="Weight of ½Σw² (a loss penalty).")
    group_lasso: float = Field(0.0, ge=0.0, le=1.0, description="Weight of Σ‖group‖₂.")
    bn_l1: float = Field(0.0, ge=0.0, le=1.0, description="Weight of Σ|γ| of BatchNorm scales.")

    @property
    def active(self) -> bool:
        return any(v > 0 for v in (self.l1, self.l2, self.group_lasso, self.bn_l1))


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [
        m.weight
        for m in model.modules()
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d) and m.weight.requires_grad
    ]


def l1(model: nn.Module) -> torch.Tensor:
    """``Σ|w|`` over the weights of Linear and Conv layers."""
    return sum((w.abs().sum() for w in _weights(model)), torch.zeros(()))


def l2(model: nn.Module) -> torch.Tensor:
    """``½·Σw²`` over the weights of Linear and Conv layers."""
    return 0.5 * sum((w.pow(2).sum() for w in _weights(model)), torch.zeros(()))


def bn_l1(model: nn.Module) -> torch.Tensor:
    """``Σ|γ|`` over the affine scales of BatchNorm layers."""
    scales = [m.weight for m in model.modules() if isinstance(m, _BN) and m.weight is not None]
    return sum((g.abs().sum() for g in scales), torch.zeros(()))


@dataclass(frozen=True)
class _Slice:
    """One member of a channel group: ``param[index]`` along ``dim``, per root channel."""

    param: nn.Parameter
    dim: int
    index: torch.Tensor  # positions in param along dim
    root: torch.Tensor  # the group channel each position belongs to


@dataclass(frozen=True)
class ChannelGroups:
    """The removable channel groups of a model, found once from torch-pruning's graph."""

    groups: tuple[tuple[int, tuple[_Slice, ...]], ...]  # (channels, members)

    @classmethod
    def of(cls, model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> ChannelGroups:
        import torch_pruning as tp
        from torch_pruning.pruner import function as fn

        dims = {
            fn.prune_conv_out_channels: 0,
            fn.prune_linear_out_channels: 0,
            fn.prune_batchnorm_out_channels: 0,
            fn.prune_conv_in_channels: 1,
            fn.prune_linear_in_channels: 1,
        }
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
        found = []
        for group in graph.get_all_groups(
            ignored_layers=output_layers(model), root_module_types=[nn.Conv2d, nn.Linear]
        ):
            members = []
            for item in group.items:
                dep, idxs = item.dep, item.idxs
                dim = dims.get(dep.handler)
                param = getattr(dep.target.module, "weight", None)
                if dim is None or not isinstance(param, nn.Parameter) or param.dim() <= dim:
                    continue
                if isinstance(dep.target.module, nn.Conv2d) and dep.target.module.groups > 1:
                    continue  # depthwise slices follow their producer's channels already
                index = torch.as_tensor(list(idxs), dtype=torch.long)
                root = torch.as_tensor(list(item.root_idxs), dtype=torch.long)
                if (
                    not len(index)
                    or len(index) != len(root)
                    or int(index.max()) >= param.shape[dim]
                ):
                    continue  # flattened index maps (conv → linear) are not channel-aligned
                members.append(_Slice(param, dim, index, root))
            if members:
                channels = int(max(int(s.root.max()) for s in members)) + 1
                found.append((channels, tuple(members)))
        return cls(tuple(found))

    def norms(self) -> list[torch.Tensor]:
        """Per group, the L2 norm of each channel over every tensor slice that holds it."""
        out = []
        for channels, members in self.groups:
            squares = torch.zeros(channels)
            for s in members:
                part = s.param.index_select(s.dim, s.index).pow(2)
                per_channel = part.transpose(0, s.dim).reshape(len(s.index), -1).sum(dim=1)
                squares = squares.index_add(0, s.root, per_channel)
            out.append(squares.clamp_min(1e-12).sqrt())
        return out


def group_lasso(groups: ChannelGroups) -> torch.Tensor:
    """``Σ_groups Σ_channels ‖w_channel‖₂``: the group-lasso penalty over removable channels."""
    return sum((n.sum() for n in groups.norms()), torch.zeros(()))


def penalty(
    model: nn.Module, config: RegularizeConfig, groups: ChannelGroups | None = None
) -> torch.Tensor:
    """The weighted sum of the configured penalties (``groups`` needed for group lasso).

    >>> net = nn.Linear(2, 1, bias=False); _ = net.weight.data.fill_(-2.0)
    >>> float(penalty(net, RegularizeConfig(l1=0.5)))
    2.0
    """
    total = torch.zeros(())
    if config.l1:
        total = total + config.l1 * l1(model)
    if config.l2:
        total = total + config.l2 * l2(model)
    if config.bn_l1:
        total = total + config.bn_l1 * bn_l1(model)
    if config.group_lasso:
        if groups is None:
            raise ValueError("group lasso needs the model's ChannelGroups")
        total = total + config.group_lasso * group_lasso(groups)
    return total


@torch.no_grad()
def induced_sparsity(model: nn.Module, groups: ChannelGroups | None = None) -> dict[str, float]:
    """How much a regularizer prepared for pruning, in percent.

    ``weights``: share of Linear/Conv weights with ``|w| < 1e-3``. ``bn_channels``: share of
    BatchNorm channels whose ``|γ|`` is below 1% of their layer's largest. ``groups``: share of
    removable channel groups whose norm is below 1% of their group's largest.
    """
    weights = _weights(model)
    total = sum(w.numel() for w in weights)
    small = sum(int((w.abs() < 1e-3).sum()) for w in weights)
    out = {"weights": 100.0 * small / max(total, 1)}
    scales = [m.weight.abs() for m in model.modules() if isinstance(m, _BN) and m.affine]
    if scales:
        near = sum(int((g < NEAR_ZERO * g.max()).sum()) for g in scales)
        out["bn_channels"] = 100.0 * near / sum(g.numel() for g in scales)
    if groups is not None and groups.groups:
        norms = groups.norms()
        near = sum(int((n < NEAR_ZERO * n.max()).sum()) for n in norms)
        out["channel_groups"] = 100.0 * near / sum(n.numel() for n in norms)
    return out
