"""Distillation as data: what the student learns from the teacher, and how the student is made.

:class:`DistillConfig` is the one distillation config: the ``distill`` step, ``slimkit.distill``
and QAT's learning from the float model all read it. :data:`StudentConfig` is a tagged union:
each way to get a student is its own type, picked by the one key a recipe gives.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from slimkit.config import Config
from slimkit.models.sources import ModelSpec


class HintPair(Config):
    """A teacher layer whose output the named student layer learns to predict."""

    teacher: str
    student: str


class AttentionPair(Config):
    """Transformer layer indices (0-based) whose attention maps are matched."""

    teacher: int = Field(ge=0)
    student: int = Field(ge=0)


class DistillConfig(Config):
    """Soft targets at ``temperature`` mixed with the hard-label loss by ``alpha``, plus optional
    hints (intermediate outputs) and attention maps, each with its weight."""

    temperature: float = Field(4.0, gt=0.0, le=100.0, description="Softens both distributions.")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="Weight of the soft-target term.")
    hints: tuple[HintPair, ...] = Field((), description="Teacher/student layers to match.")
    hint_weight: float = Field(1.0, ge=0.0, description="Weight of each hint's MSE.")
    attention: tuple[AttentionPair, ...] = Field(
        (), description="Transformer layers whose attention maps are matched."
    )
    attention_weight: float = Field(1.0, ge=0.0, description="Weight of each attention KL.")
    cache_teacher: bool = Field(
        True,
        description="Compute the teacher's logits once (without hints or attention), averaged "
        "over the flips and quarter turns augment draws from; other augmentations run it live.",
    )

    @property
    def logits_only(self) -> bool:
        """Whether only the teacher's logits are learned from (no hints, no attention)."""
        return not (self.hints or self.attention)


class KeepEveryStudent(Config):
    """A copy of the teacher keeping every k-th transformer layer, the top one included:
    ``keep_every: 3`` keeps layers 3 and 6 of six (TinyBERT's uniform mapping)."""

    keep_every: int = Field(ge=1)


class KeepLayersStudent(Config):
    """A copy of the teacher keeping these transformer layers (0-based), in order."""

    keep_layers: tuple[int, ...] = Field(min_length=1)


class NarrowerStudent(Config):
    """The teacher's architecture rebuilt with this share of its ``width`` kwarg, freshly
    initialised (Hinton et al.'s small student)."""

    width: float = Field(gt=0.0, lt=1.0)


class ShallowerStudent(Config):
    """A copy of the teacher keeping ``depth`` of each stage's residual blocks (rounded up, at
    least one), with the teacher's weights: EfficientNet's depth multiplier, applied to a
    trained network (:mod:`slimkit.models.blocks`)."""

    depth: float = Field(gt=0.0, lt=1.0, description="Share of each stage's blocks kept.")


class ModelStudent(Config):
    """Any model source, for a student of another family."""

    model: ModelSpec


class CurrentStudent(Config):
    """The incoming model itself, e.g. a pruned network recovering with the baseline as its
    teacher (``teacher: baseline``)."""

    current: Literal[True]


_WAYS: dict[str, type[Config]] = {
    "keep_every": KeepEveryStudent,
    "keep_layers": KeepLayersStudent,
    "width": NarrowerStudent,
    "depth": ShallowerStudent,
    "model": ModelStudent,
    "current": CurrentStudent,
}


def _way(value: Any) -> str | None:
    """The tag of a student: the one key of the mapping (or the type of a built config)."""
    if isinstance(value, dict):
        given = [k for k in _WAYS if k in value]
        return given[0] if len(given) == 1 else None
    return next((k for k, t in _WAYS.items() if isinstance(value, t)), None)


StudentConfig = Annotated[
    Annotated[KeepEveryStudent, Tag("keep_every")]
    | Annotated[KeepLayersStudent, Tag("keep_layers")]
    | Annotated[NarrowerStudent, Tag("width")]
    | Annotated[ShallowerStudent, Tag("depth")]
    | Annotated[ModelStudent, Tag("model")]
    | Annotated[CurrentStudent, Tag("current")],
    Discriminator(
        _way,
        custom_error_type="student",
        custom_error_message=(
            "give exactly one of keep_every, keep_layers, width, depth, model, current"
        ),
    ),
]
