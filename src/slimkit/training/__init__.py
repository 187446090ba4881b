"""Training: one supervised loop on Accelerate, shared by baselines and fine-tuning."""

from slimkit.training.augment import AUGMENTS
from slimkit.training.trainer import TrainConfig, TrainHistory, sparsity_masks, train

__all__ = ["AUGMENTS", "TrainConfig", "TrainHistory", "sparsity_masks", "train"]
