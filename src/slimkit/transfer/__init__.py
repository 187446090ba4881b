"""Transfer learning: moving weights between models, and choosing what trains and how fast."""

from slimkit.transfer.params import depth_groups, freeze, layerwise_lrs

__all__ = ["depth_groups", "freeze", "layerwise_lrs"]
