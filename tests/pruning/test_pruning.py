"""Pruning: exact sparsities, and structured pruning that really shrinks the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import slimkit
from slimkit.errors import StepError
from slimkit.pruning import ChannelConfig, MagnitudeConfig, prune


def _zeros(t: torch.Tensor) -> int:
    return int((t == 0).sum())


def test_global_magnitude_hits_the_exact_sparsity_where_weights_are_smallest():
    net = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 10))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(100.0).view(10, 10) + 1)  # 1..100
        net[1].weight.copy_(torch.arange(100.0).view(10, 10) + 101)  # 101..200
    prune(net, MagnitudeConfig(sparsity=0.25))
    # the 50 smallest of 200 are all in the first layer
    assert _zeros(net[0].weight) == 50 and _zeros(net[1].weight) == 0
    assert float(net[0].weight[5, 0]) == 51.0  # the first kept value


def test_layer_scope_prunes_each_layer_equally():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 5))
    prune(net, MagnitudeConfig(sparsity=0.3, scope="layer"))
    assert _zeros(net[0].weight) == 60 and _zeros(net[1].weight) == 30
    assert _zeros(net[0].bias) == 0


def test_ignore_and_targets_select_layers_by_type_name_or_regex():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    prune(net, MagnitudeConfig(sparsity=0.5, scope="layer", ignore=("re:2",)))
    assert _zeros(net[0].weight) == 18 and _zeros(net[2].weight) == 0
    prune(net, MagnitudeConfig(sparsity=0.5, scope="layer", targets=("Linear",)))
    assert _zeros(net[2].weight) == 4


def test_magnitude_without_matching_layers_is_an_error():
    with pytest.raises(StepError, match="found no layers matching targets"):
        prune(nn.Sequential(nn.ReLU()), MagnitudeConfig(sparsity=0.5))


def test_channel_pruning_shrinks_every_stage_and_keeps_the_classes():
    net = slimkit.build_model("resnet-mini", num_classes=10, in_channels=1)
    x = torch.randn(2, 1, 28, 28)
    prune(net, ChannelConfig(ratio=0.5), (x[:1],))
    assert [
        net.stem[0].out_channels,
        net.layers[1].conv1.out_channels,
        net.layers[2].conv2.out_channels,
    ] == [8, 16, 32]
    assert net.head.in_features == 32 and net.head.out_features == 10
    assert net(x).shape == (2, 10)
    # residual adds forced conv2 and the shortcut of each block to keep the same channels
    assert net.layers[1].shortcut[0].out_channels == net.layers[1].conv2.out_channels


def test_channel_pruning_round_to():
    net = slimkit.build_model("small-cnn", num_classes=3, in_channels=1, width=12, depth=2)
    prune(net, ChannelConfig(ratio=0.5, round_to=4), (torch.randn(1, 1, 16, 16),))
    assert net.features[0][0].out_channels % 4 == 0
    assert net.features[1][0].out_channels % 4 == 0


def test_channel_pruning_needs_convolutions():
    with pytest.raises(StepError, match="needs convolutional layers"):
        prune(
            nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)),
            ChannelConfig(ratio=0.5),
            (torch.randn(1, 4),),
        )
