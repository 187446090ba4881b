"""Transfer learning: moving weights between models (name/shape matching) and its step.

Feature extraction (the head trained on a frozen backbone's cached features) and what trains how
fast (depth groups, freezing, layer-wise learning rates) are ways to train, so they live with
the trainer in :mod:`slimkit.training`; they are re-exported here.
"""

from slimkit.training.features import train_head
from slimkit.training.params import depth_groups, freeze, layerwise_lrs

__all__ = ["depth_groups", "freeze", "layerwise_lrs", "train_head"]
