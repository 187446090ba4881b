"""Input resolution as part of a network: the images it is given, resized as its first op.

A convolutional network's arithmetic grows with the square of the image side, so MobileNet's
resolution multiplier and EfficientNet's compound scaling shrink the input along with width and
depth. A student that resizes inside its own forward keeps its teacher's contract: it takes the
same tensors (the data, the teacher, the evaluation and a deployed client need not change), and
the resize travels into every exported graph (as two MatMuls where it can: :func:`bilinear`).

The resize is a forward pre-hook on the model rather than a wrapping module, so every layer
keeps its name (pruning rules, hints and saved weights still address it); torch.export, the
ONNX exporter and torch.compile trace the hook like any other op, and ``copy.deepcopy`` copies
it. The architecture record stores the size (``Arch.resolution``), and loading a saved model
puts the hook back.
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.errors import StepError

# The largest block a side may shrink by as a matrix (:func:`bilinear`): the fractions a search
# offers (7/8, 3/4, 5/8) need 8.
MAX_BLOCK = 16


def _block_weights(p: int, q: int) -> torch.Tensor:
    """``[q, p]``: how each of ``p`` outputs mixes the ``q`` inputs of its block when a side
    shrinks by ``p/q``, bilinearly with half-pixel centres. Output ``m`` samples input
    ``(m + 1/2) q/p - 1/2``, which lies in ``[0, q - 1]`` for ``p <= q``: inside its block."""
    weights = torch.zeros(q, p, dtype=torch.float64)
    for m in range(p):
        source = (m + Fraction(1, 2)) * Fraction(q, p) - Fraction(1, 2)
        low = math.floor(source)
        frac = float(source - low)
        weights[low, m] += 1.0 - frac
        if frac:
            weights[low + 1, m] += frac
    return weights


def _shrink_last(x: torch.Tensor, out: int) -> torch.Tensor | None:
    """``x`` with its last axis shrunk to ``out`` as blocks times a matrix, or None where the
    ratio's denominator does not divide the side (or exceeds :data:`MAX_BLOCK`)."""
    side = x.shape[-1]
    ratio = Fraction(out, side)
    p, q = ratio.numerator, ratio.denominator
    if p > q or q > MAX_BLOCK or side % q:
        return None
    weights = _block_weights(p, q).to(x.dtype)
    return (x.reshape(*x.shape[:-1], side // q, q) @ weights).reshape(*x.shape[:-1], out)


def bilinear(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``images`` (N, C, H, W) resized to ``size`` as ``F.interpolate(mode="bilinear",
    align_corners=False)`` resizes them (which places its samples in float32, so the two
    differ by about 1e-4 of the pixel range).

    Where each side shrinks by a fraction ``p/q`` whose ``q`` divides it, every output pixel
    mixes only the ``q`` input pixels of its block, so the resize is a ``q x p`` matrix applied
    to the blocks of each axis: two MatMuls, which OpenVINO runs faster than its Interpolate on
    a one-channel image (docs/measurements.md, "Lower-resolution students"). Otherwise it
    interpolates."""
    wide = _shrink_last(images, size[1])
    if wide is not None:
        tall = _shrink_last(wide.transpose(-1, -2), size[0])
        if tall is not None:
            return tall.transpose(-1, -2)
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


class InputResize:
    """A forward pre-hook that resizes a model's image input (N, C, H, W) to ``size``,
    bilinearly (:func:`bilinear`)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, module: nn.Module, args: tuple[object, ...]) -> tuple[object, ...]:
        images, *rest = args
        assert isinstance(images, torch.Tensor)
        return (bilinear(images, self.size), *rest)

    def __repr__(self) -> str:
        return f"InputResize(size={self.size})"


def input_size(model: nn.Module) -> tuple[int, int] | None:
    """The (height, width) ``model`` resizes its images to, or None if it takes them as given."""
    hooks = [h for h in model._forward_pre_hooks.values() if isinstance(h, InputResize)]
    return hooks[-1].size if hooks else None


def resize_inputs(model: nn.Module, size: tuple[int, int]) -> None:
    """Make ``model`` resize its images to ``size`` (height, width) before its first layer,
    in place, replacing any resize it had."""
    for key, hook in list(model._forward_pre_hooks.items()):
        if isinstance(hook, InputResize):
            del model._forward_pre_hooks[key]
    model.register_forward_pre_hook(InputResize(size))


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """Each side of ``size`` times ``scale``, rounded up (at least one pixel)."""
    return (max(1, math.ceil(size[0] * scale)), max(1, math.ceil(size[1] * scale)))


def check_resizable(model: nn.Module, example: torch.Tensor) -> None:
    """Raise :class:`StepError` unless ``model`` accepts ``example``: a network whose head
    expects one feature-map size (a flatten into a Linear, no global pooling) cannot see its
    images at another resolution."""
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(example)
    except RuntimeError as err:
        size = input_size(model)
        raise StepError(
            f"{type(model).__name__} does not run on images resized to {size}: {err}. A lower "
            "resolution needs a network that pools its last feature map globally (no flatten "
            "into a Linear of a fixed size). Drop resolution:."
        ) from None
    finally:
        model.train(training)


def runs_smaller(model: nn.Module, example: torch.Tensor, scale: float) -> bool:
    """Whether a copy of ``model`` runs on ``example`` (N, C, H, W) with each side resized to
    ``scale``: whether a lower-resolution student of it can exist."""
    if example.dim() != 4:
        return False
    trial = copy.deepcopy(model)
    resize_inputs(trial, scaled_size((example.shape[2], example.shape[3]), scale))
    try:
        check_resizable(trial, example)
    except StepError:
        return False
    return True
