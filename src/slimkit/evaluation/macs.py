"""Multiply-accumulates of one forward pass, counted by PyTorch's own FLOP counter.

``FlopCounterMode`` counts the matrix products and convolutions aten actually runs (attention
matmuls included), so the figure follows the real graph rather than a per-layer formula.
One MAC is two FLOPs; element-wise work (bias, activations, norms) is not counted.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """MACs of ``model(*inputs)`` per example (``inputs`` may hold any batch size)."""
    batch = int(inputs[0].shape[0])
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return int(counter.get_total_flops()) // 2 // batch
