"""Residual blocks, read off a network's own forward code: what a shallower student drops.

A residual block computes ``x + f(x)`` (or a shape-keeping function of that sum, as ResNet's
ReLU after it): without ``f`` it is the identity, so dropping the block keeps every shape and is
the smallest change to what the network computes, as stochastic depth drops blocks in training
(Huang et al. 2016). A block is residual if tracing its ``forward`` (its own children as opaque
calls) finds an addition of the block's input, directly or through an ``nn.Identity`` shortcut.
No list of architectures: EfficientNet's MBConv, ResNet's basic block and a user's own block
are found alike.

Residual blocks come in stages: a block that changes the shape (a stride, more channels), then
repeats that keep it. :func:`shallower` keeps a share of each stage's blocks, rounded up as
EfficientNet's depth multiplier rounds its repeats, so every stage keeps its first block and the
shape-changing one; the last repeats go, since the first repeat after a change of shape refines
the newest features most.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
from torch import fx, nn

from slimkit.errors import ModelLoadError

_ADDS = (operator.add, operator.iadd, torch.add)


class _Shallow(fx.Tracer):
    """Traces one module's own forward, its children as opaque calls."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _has_weights(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def is_residual(block: nn.Module) -> bool:
    """Whether ``block``'s forward adds its input to what it computes (and so whether the
    identity may stand in for it)."""
    if isinstance(block, nn.Identity) or not _has_weights(block):
        return False
    try:
        graph = _Shallow().trace(block)
    except Exception:  # forward code fx cannot follow (data-dependent control flow): not ours
        return False
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return False

    def source(node: object) -> object:  # look through identity shortcuts
        while isinstance(node, fx.Node) and node.op == "call_module":
            if not isinstance(block.get_submodule(str(node.target)), nn.Identity):
                break
            node = node.args[0]
        return node

    return any(
        n.op == "call_function" and n.target in _ADDS and inputs[0] in map(source, n.args)
        for n in graph.nodes
    )


@dataclass(frozen=True)
class Stage:
    """Blocks of one shape in a sequential container: ``first`` (the block with weights that
    changed the shape, or None where residual blocks follow none, e.g. after a pooling) and
    the residual ``repeats``."""

    first: str | None
    repeats: tuple[str, ...]

    @property
    def blocks(self) -> int:
        return len(self.repeats) + (self.first is not None)


def stages(model: nn.Module) -> list[Stage]:
    """The stages of residual blocks in ``model``'s sequential containers, in forward order.

    Blocks already dropped (identities) are skipped; containers inside a residual block are not
    searched, so no block is counted twice."""
    found: list[Stage] = []
    inside: list[str] = []  # residual blocks found so far, whose insides are theirs
    for name, module in model.named_modules():
        if any(name.startswith(f"{b}.") for b in inside):
            continue
        if not isinstance(module, nn.Sequential | nn.ModuleList):
            continue
        first: str | None = None
        repeats: list[str] = []
        for child_name, child in module.named_children():
            if isinstance(child, nn.Identity):
                continue
            qualified = f"{name}.{child_name}" if name else child_name
            if is_residual(child):
                repeats.append(qualified)
                inside.append(qualified)
                continue
            if repeats:
                found.append(Stage(first, tuple(repeats)))
            # an activation or a pooling ends a stage but is not a block a stage keeps
            first, repeats = (qualified if _has_weights(child) else None), []
        if repeats:
            found.append(Stage(first, tuple(repeats)))
    return found


def shallower(model: nn.Module, depth: float) -> list[str]:
    """The residual blocks to drop so that each stage keeps ``ceil(depth * blocks)`` of its
    blocks (at least one): its first, then its earliest repeats."""
    dropped: list[str] = []
    for stage in stages(model):
        kept = max(1, math.ceil(depth * stage.blocks))
        repeats_kept = kept - (stage.first is not None)
        dropped += stage.repeats[max(repeats_kept, 0) :]
    return dropped


def drop_blocks(model: nn.Module, names: list[str] | tuple[str, ...]) -> None:
    """Put the identity in place of each residual block ``names`` names, in place."""
    for name in names:
        try:
            block = model.get_submodule(name)
        except AttributeError:
            block = None
        if block is None or not is_residual(block):
            raise ModelLoadError(
                f"{name!r} is not a residual block of {type(model).__name__}, so a shallower "
                "student cannot have dropped it: the architecture record does not fit this "
                "network."
            )
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
