"""Training: one supervised loop on Accelerate, shared by baselines and fine-tuning.

``TrainConfig`` is imported at once; the trainer (and Accelerate) when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slimkit.training.augment import AUGMENTS
from slimkit.training.config import TrainConfig

if TYPE_CHECKING:
    from slimkit.training.trainer import TrainHistory, sparsity_masks, train

_LAZY = {"TrainHistory", "sparsity_masks", "train"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from slimkit.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'slimkit.training' has no attribute {name!r}")


__all__ = ["AUGMENTS", "TrainConfig", "TrainHistory", "sparsity_masks", "train"]
