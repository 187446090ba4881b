"""Pruning configs: one frozen config per method; the ``method`` key picks it in recipes."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from slimkit.config import Config
from slimkit.layers import validate_patterns
from slimkit.registry import Registry


class Scope(StrEnum):
    GLOBAL = (
        "global"  # one threshold over all targeted layers: sparsity lands where weights are small
    )
    LAYER = "layer"  # the same sparsity in every targeted layer


class Importance(StrEnum):
    L1 = "l1"
    L2 = "l2"
    RANDOM = "random"  # a baseline: any criterion worth using must beat it


class PruneConfig(Config):
    """Fields shared by every pruning method."""

    method: str
    ignore: tuple[str, ...] = ()

    @field_validator("ignore")
    @classmethod
    def _patterns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_patterns(v))


PRUNE_METHODS: Registry[type[PruneConfig]] = Registry("pruning method")


@PRUNE_METHODS.register("magnitude")
class MagnitudeConfig(PruneConfig):
    """Unstructured: zero the smallest-magnitude weights until ``sparsity`` of them are zero."""

    method: Literal["magnitude"] = "magnitude"
    sparsity: float = Field(gt=0.0, lt=1.0)
    scope: Scope = Scope.GLOBAL
    targets: tuple[str, ...] = ("Conv2d", "Linear")

    @field_validator("targets")
    @classmethod
    def _target_patterns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_patterns(v))


@PRUNE_METHODS.register("channels")
class ChannelConfig(PruneConfig):
    """Structured: remove whole conv filters/channels (and what depends on them) with torch-pruning.

    The model gets physically smaller, so every runtime runs it faster. The output layer is
    never pruned: its width is the number of classes.
    """

    method: Literal["channels"] = "channels"
    ratio: float = Field(gt=0.0, lt=1.0, description="Share of channels removed per group.")
    importance: Importance = Importance.L2
    round_to: int | None = Field(None, ge=1, description="Keep channel counts multiples of this.")
