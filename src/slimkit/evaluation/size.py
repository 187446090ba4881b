"""Parameter counts and non-zeros: what a model holds, independent of how it is stored."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameters (tied parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Number of parameters that are not exactly zero (tied parameters counted once)."""
    with torch.no_grad():
        return sum(int(torch.count_nonzero(p)) for p in model.parameters())
