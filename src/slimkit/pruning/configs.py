"""Pruning configs: one frozen config per method; the ``method`` key picks it in recipes."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from slimkit.config import Config
from slimkit.layers import validate_patterns
from slimkit.registry import Registry
from slimkit.training.config import TrainConfig


class Scope(StrEnum):
    GLOBAL = (
        "global"  # one threshold over all targeted layers: sparsity lands where weights are small
    )
    LAYER = "layer"  # the same sparsity in every targeted layer
    SENSITIVITY = "sensitivity"  # per-layer sparsities from measured sensitivity (prune step)


class Ramp(StrEnum):
    CUBIC = "cubic"  # Zhu & Gupta 2017: fast while much is redundant, slow near the target
    LINEAR = "linear"


class GradualConfig(Config):
    """Prune a little every ``every`` optimizer steps while fine-tuning with ``finetune``."""

    finetune: TrainConfig
    ramp: Ramp = Ramp.CUBIC
    initial_sparsity: float = Field(0.0, ge=0.0, lt=1.0)
    every: int = Field(20, ge=1, le=1_000_000, description="Optimizer steps between prunings.")
    ramp_fraction: float = Field(
        0.75, gt=0.0, le=1.0, description="Share of training over which sparsity ramps up."
    )


class Importance(StrEnum):
    L1 = "l1"
    L2 = "l2"
    BN_SCALE = "bn-scale"  # |gamma| of the BatchNorm after each channel (network slimming)
    TAYLOR = "taylor"  # |weight x gradient|: first-order loss change, from a few batches
    RANDOM = "random"  # a baseline: any criterion worth using must beat it


class Need(StrEnum):
    """What a pruning method needs besides the model; the step hands over what is declared."""

    EXAMPLE_INPUTS = "example_inputs"  # one batch of inputs: structured methods trace the model
    BATCHES = "batches"  # (inputs, labels) of training data: token counts, gradients
    BETWEEN = "between"  # the fine-tuning an iterative method runs between its rounds
    DATA = "data"  # the data set: to train while pruning, or to measure layers on validation
    TOKENIZER = "tokenizer"  # the model's tokenizer (its [UNK] id)


class PruneConfig(Config):
    """Fields shared by every pruning method."""

    method: str
    ignore: tuple[str, ...] = Field((), description="Layers left whole (names, types, re:).")

    def needs(self) -> frozenset[Need]:
        """What :func:`slimkit.prune` must be given for this config (none by default)."""
        return frozenset()

    @property
    def between_rounds(self) -> TrainConfig | None:
        """The training an iterative method runs between its rounds (``Need.BETWEEN``)."""
        return None

    @property
    def nominal_sparsity(self) -> float | None:
        """The share of targeted weights this method zeroes, if it zeroes weights (the prune
        step says so when the model as a whole ends up far less sparse)."""
        return None

    @field_validator("ignore")
    @classmethod
    def _patterns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_patterns(v))


PRUNE_METHODS: Registry[type[PruneConfig]] = Registry("pruning method")


def _share_per_layer(v: dict[str, float], what: str) -> dict[str, float]:
    """Per-layer overrides: valid layer patterns, each with a share in [0, 1)."""
    validate_patterns(list(v))
    for pattern, share in v.items():
        if not 0.0 <= share < 1.0:
            raise ValueError(f"override {pattern!r}: {what} must be in [0, 1), got {share}")
    return v


@PRUNE_METHODS.register("magnitude")
class MagnitudeConfig(PruneConfig):
    """Unstructured: zero the smallest-magnitude weights until ``sparsity`` of them are zero."""

    method: Literal["magnitude"] = "magnitude"
    sparsity: float = Field(gt=0.0, lt=1.0, description="Share of targeted weights zeroed.")
    scope: Scope = Field(Scope.GLOBAL, description="One threshold, per layer, or by sensitivity.")
    targets: tuple[str, ...] = Field(("Conv2d", "Linear"), description="Layers pruned.")
    overrides: dict[str, float] = Field(
        default_factory=dict, description="Layer pattern -> its own sparsity (layer-wise)."
    )
    gradual: GradualConfig | None = Field(None, description="Reach sparsity while fine-tuning.")

    def needs(self) -> frozenset[Need]:
        measures = self.scope is Scope.SENSITIVITY or self.gradual is not None
        return frozenset({Need.DATA} if measures else set())

    @property
    def nominal_sparsity(self) -> float | None:
        return self.sparsity

    @field_validator("targets")
    @classmethod
    def _target_patterns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(validate_patterns(v))

    @field_validator("overrides")
    @classmethod
    def _override_values(cls, v: dict[str, float]) -> dict[str, float]:
        return _share_per_layer(v, "sparsity")


@PRUNE_METHODS.register("random")
class RandomConfig(MagnitudeConfig):
    """Unstructured baseline: zero a random ``sparsity`` of the weights (seeded)."""

    method: Literal["random"] = "random"  # type: ignore[assignment]
    seed: int = 0


@PRUNE_METHODS.register("n:m")
class NMConfig(PruneConfig):
    """Semi-structured: keep the ``n`` largest of every ``m`` consecutive input weights (2:4).

    Targets convolutions and linear layers alike; a layer whose input size is not a multiple
    of ``m`` (a 1- or 3-channel stem, a depthwise convolution) stays dense and is named in the
    step's notes.
    """

    method: Literal["n:m"] = "n:m"
    n: int = Field(2, ge=1, le=64, description="Weights kept in each group.")
    m: int = Field(4, ge=2, le=64, description="Consecutive input weights per group.")
    targets: tuple[str, ...] = Field(("Conv2d", "Linear"), description="Layers pruned.")

    @property
    def nominal_sparsity(self) -> float | None:
        return 1 - self.n / self.m

    @model_validator(mode="after")
    def _n_below_m(self) -> NMConfig:
        if self.n >= self.m:
            raise ValueError(f"n must be smaller than m, got {self.n}:{self.m}")
        return self


@PRUNE_METHODS.register("channels")
class ChannelConfig(PruneConfig):
    """Structured: remove whole conv filters/channels (and what depends on them) with torch-pruning.

    The model gets physically smaller, so every runtime runs it faster. The output layer is
    never pruned: its width is the number of classes.
    """

    method: Literal["channels"] = "channels"
    ratio: float = Field(gt=0.0, lt=1.0, description="Share of channels removed per group.")
    overrides: dict[str, float] = Field(
        default_factory=dict,
        description="Layer pattern -> the share removed from the group that layer leads.",
    )
    importance: Importance = Field(Importance.L2, description="How channels are ranked.")
    round_to: int | None = Field(None, ge=1, description="Keep channel counts multiples of this.")
    iterations: int = Field(1, ge=1, le=100, description="Reach the ratio in this many rounds.")
    finetune: TrainConfig | None = Field(None, description="Training between iterative rounds.")
    taylor_batches: int = Field(8, ge=1, le=10_000, description="Gradient batches for taylor.")

    def needs(self) -> frozenset[Need]:
        gradients = {Need.BATCHES} if self.importance is Importance.TAYLOR else set()
        rounds = {Need.BETWEEN} if self.iterations > 1 else set()
        return frozenset({Need.EXAMPLE_INPUTS, *gradients, *rounds})

    @property
    def between_rounds(self) -> TrainConfig | None:
        return self.finetune

    @field_validator("overrides")
    @classmethod
    def _override_values(cls, v: dict[str, float]) -> dict[str, float]:
        return _share_per_layer(v, "share of channels")

    @model_validator(mode="after")
    def _rounds_need_training(self) -> ChannelConfig:
        if self.iterations > 1 and self.finetune is None:
            raise ValueError("iterations > 1 prunes, fine-tunes and repeats: set finetune")
        return self


@PRUNE_METHODS.register("heads")
class HeadsConfig(PruneConfig):
    """Structured, transformers: remove ``ratio`` of the attention heads of every layer."""

    method: Literal["heads"] = "heads"
    ratio: float = Field(gt=0.0, lt=1.0, description="Share removed from every layer.")
    importance: Importance = Field(Importance.L2, description="How they are ranked.")

    @field_validator("importance")
    @classmethod
    def _magnitude_only(cls, v: Importance) -> Importance:
        if v not in (Importance.L1, Importance.L2):
            raise ValueError("heads are ranked by l1 or l2 magnitude")
        return v


@PRUNE_METHODS.register("ffn")
class FfnConfig(HeadsConfig):
    """Structured, transformers: remove ``ratio`` of the feed-forward neurons of every layer."""

    method: Literal["ffn"] = "ffn"  # type: ignore[assignment]
    round_to: int | None = Field(None, ge=1, description="Keep neuron counts multiples of this.")


@PRUNE_METHODS.register("vocab")
class VocabConfig(PruneConfig):
    """Structured, text models: keep only the token embeddings the training data uses.

    Token ids seen fewer than ``min_count`` times in the training split are mapped to
    ``unk_token`` (the step reads it from the model's tokenizer) and their rows are removed.
    """

    method: Literal["vocab"] = "vocab"
    min_count: int = Field(1, ge=1, le=1_000_000)
    unk_token: int | None = Field(None, ge=0, description="Default: the tokenizer's [UNK] id.")

    def needs(self) -> frozenset[Need]:
        unk = {Need.TOKENIZER} if self.unk_token is None else set()
        return frozenset({Need.BATCHES, *unk})
