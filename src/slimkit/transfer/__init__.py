"""Transfer learning: moving weights between models (name/shape matching), feature extraction.

What trains and how fast (depth groups, freezing, layer-wise learning rates) lives with the
trainer, in :mod:`slimkit.training.params`, and is re-exported here.
"""

from slimkit.training.params import depth_groups, freeze, layerwise_lrs

__all__ = ["depth_groups", "freeze", "layerwise_lrs"]
