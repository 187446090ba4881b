"""Built-in vision nets: a small CNN and a small residual net, width and depth configurable.

torchvision does not install beside the CPU torch build slimkit targets, so the nets users
compress in the demo and benchmarks are defined here. Both end in global average pooling and a
``head`` Linear, so any input resolution works and transfer learning swaps one module.
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.models.registry import register_model


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )


class SmallCNN(nn.Module):
    """Plain conv stack: ``depth`` conv-BN-ReLU stages, each after the first halving resolution.

    The last feature map is average-pooled to ``grid`` x ``grid`` and flattened into the head.
    ``grid: 1`` is global average pooling. A larger grid keeps *where* features are, which a
    net this shallow needs: its receptive field is a fraction of the image (docs/measurements.md,
    "CNN students").
    """

    def __init__(
        self, num_classes: int, in_channels: int, width: int, depth: int, grid: int = 1
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(depth):
            cout = width * 2**i
            layers.append(ConvBNReLU(cin, cout, stride=1 if i == 0 else 2))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.head = nn.Linear(cin * grid * grid, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class BasicBlock(nn.Module):
    """ResNet basic block; a 1x1 projection on the shortcut when shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        # One activation module per use: graph quantizers (PT2E) partition by module, and a
        # module called twice becomes a partition with two outputs they cannot annotate.
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNetMini(nn.Module):
    """Three-stage residual net (widths w, 2w, 4w) with ``depth`` blocks per stage."""

    def __init__(self, num_classes: int, in_channels: int, width: int, depth: int) -> None:
        super().__init__()
        self.stem = ConvBNReLU(in_channels, width)
        blocks: list[nn.Module] = []
        cin = width
        for stage in range(3):
            cout = width * 2**stage
            for i in range(depth):
                blocks.append(BasicBlock(cin, cout, stride=2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _positive(**sizes: int) -> None:
    """Reject a size below 1: a zero width or grid builds a net whose head sees nothing."""
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


@register_model("small-cnn")
def small_cnn(
    num_classes: int = 10, in_channels: int = 1, width: int = 16, depth: int = 3, grid: int = 1
) -> SmallCNN:
    """Small plain CNN (conv-BN-ReLU stages, average pool to grid x grid, linear head)."""
    _positive(width=width, depth=depth, grid=grid)
    return SmallCNN(num_classes, in_channels, width, depth, grid)


@register_model("resnet-mini")
def resnet_mini(
    num_classes: int = 10, in_channels: int = 1, width: int = 16, depth: int = 1
) -> ResNetMini:
    """Small residual net: 3 stages of basic blocks, widths w/2w/4w (78k params at w=16)."""
    _positive(width=width, depth=depth)
    return ResNetMini(num_classes, in_channels, width, depth)
