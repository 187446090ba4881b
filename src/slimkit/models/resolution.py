"""Input resolution as part of a network: the images it is given, resized as its first op.

A convolutional network's arithmetic grows with the square of the image side, so MobileNet's
resolution multiplier and EfficientNet's compound scaling shrink the input along with width and
depth. A student that resizes inside its own forward keeps its teacher's contract: it takes the
same tensors (the data, the teacher, the evaluation and a deployed client need not change), and
the resize travels into every exported graph (ONNX ``Resize``, OpenVINO ``Interpolate``).

The resize is a forward pre-hook on the model rather than a wrapping module, so every layer
keeps its name (pruning rules, hints and saved weights still address it); torch.export, the
ONNX exporter and torch.compile trace the hook like any other op, and ``copy.deepcopy`` copies
it. The architecture record stores the size (``Arch.resolution``), and loading a saved model
puts the hook back.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.errors import StepError


class InputResize:
    """A forward pre-hook that resizes a model's image input (N, C, H, W) to ``size``,
    bilinearly: the interpolation every ONNX and OpenVINO runtime implements alike."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, module: nn.Module, args: tuple[object, ...]) -> tuple[object, ...]:
        images, *rest = args
        assert isinstance(images, torch.Tensor)
        resized = F.interpolate(images, size=self.size, mode="bilinear", align_corners=False)
        return (resized, *rest)

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
