"""Calibration data checks shared by every backend that calibrates."""

from __future__ import annotations

import torch

from slimkit.errors import StepError


def check_calibration(batches: list[tuple[torch.Tensor, ...]]) -> None:
    """Refuse calibration sets that would give meaningless ranges: empty, or with NaN/Inf."""
    if not batches:
        raise StepError("static-int8 needs calibration data, and the calibration set is empty.")
    for batch in batches:
        if any(x.is_floating_point() and not torch.isfinite(x).all() for x in batch):
            raise StepError(
                "The calibration data contains NaN or Inf; ranges would be meaningless."
            )
