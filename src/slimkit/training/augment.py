"""Batch augmentations for training, by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from slimkit.errors import StepError
from slimkit.registry import Registry

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
View = Callable[[torch.Tensor], torch.Tensor]

AUGMENTS: Registry[Augment] = Registry("augmentation")

MAX_SHIFT = 2  # pixels; MNIST digits are centred by their mass, so ±2 px covers real jitter


@AUGMENTS.register("random-shift")
def random_shift(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by a random whole number of pixels (up to ±2), edges replicated."""
    n, _, h, w = images.shape
    shifts = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (n, 2), generator=generator).float()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    # affine_grid works in [-1, 1] coordinates: one pixel is 2/size.
    theta[:, 0, 2] = shifts[:, 0] * 2.0 / w
    theta[:, 1, 2] = shifts[:, 1] * 2.0 / h
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="border", align_corners=False)


@AUGMENTS.register("random-flip")
def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right and top-bottom, each with probability 1/2: for data with no
    preferred orientation (solar cells, tissue, aerial views), never for digits or text."""
    n = images.shape[0]
    flips = torch.rand(n, 2, generator=generator) < 0.5
    out = images.clone()
    out[flips[:, 0]] = out[flips[:, 0]].flip(-1)
    out[flips[:, 1]] = out[flips[:, 1]].flip(-2)
    return out


@AUGMENTS.register("random-rot90")
def random_rot90(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Turn each square image by 0, 90, 180 or 270 degrees, uniformly: with ``random-flip``,
    all eight symmetries of a square, for square images with no preferred orientation (a
    solar cell's cracks run any way; its busbars turn with it)."""
    _check_square(images)
    n = images.shape[0]
    turns = torch.randint(0, 4, (n,), generator=generator)
    out = images.clone()
    for k in (1, 2, 3):
        out[turns == k] = images[turns == k].rot90(k, dims=(-2, -1))
    return out


def _check_square(images: torch.Tensor) -> None:
    h, w = images.shape[-2:]
    if h != w:
        raise StepError(
            f"random-rot90 turns square images, and these are {h} x {w}: drop it from augment, "
            "or resize the data to a square (image_size)."
        )


def _identity(images: torch.Tensor) -> torch.Tensor:
    return images


def _turn(k: int) -> View:
    def view(images: torch.Tensor) -> torch.Tensor:
        _check_square(images)
        return images.rot90(k, dims=(-2, -1))

    return view


# The transforms an augmentation draws each image's from, uniformly, where they are a finite set
# of symmetries of the data. A teacher's outputs averaged over them are the same target for
# every view a student is shown, so distillation computes them once (``cache_teacher``).
VIEWS: dict[str, tuple[View, ...]] = {
    "random-flip": (
        _identity,
        lambda x: x.flip(-1),
        lambda x: x.flip(-2),
        lambda x: x.flip(-1).flip(-2),
    ),
    "random-rot90": tuple(_turn(k) for k in range(4)),
}


def symmetries(names: Sequence[str]) -> tuple[View, ...] | None:
    """Every distinct view the augmentations ``names`` can produce (compositions of one view of
    each, in order, the identity first), or None where one of them draws from no finite set.
    Flips and quarter turns compose to the eight symmetries of a square, not sixteen."""
    views: list[View] = [_identity]
    for name in names:
        if name not in VIEWS:
            return None
        views = [_then(first, then) for first in views for then in VIEWS[name]]
    # the views permute pixels: two are the same where they move a probe's pixels alike
    probe = torch.arange(16.0).reshape(1, 1, 4, 4)
    distinct: dict[tuple[float, ...], View] = {}
    for view in views:
        distinct.setdefault(tuple(view(probe).flatten().tolist()), view)
    return tuple(distinct.values())


def _then(first: View, then: View) -> View:
    return lambda images: then(first(images))
