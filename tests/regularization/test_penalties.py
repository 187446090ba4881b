"""Penalties against hand-computed values, and what they do to a model when trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from slimkit.data import load_data
from slimkit.models import ModelSpec, build_model
from slimkit.regularization import (
    RegularizeConfig,
    bn_l1,
    group_lasso,
    induced_sparsity,
    l1,
    l2,
    penalty,
)
from slimkit.regularization.penalties import ChannelGroups
from slimkit.training import TrainConfig, train


def _net() -> nn.Module:
    net = nn.Sequential(
        nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 3)
    )
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([3.0, -4.0]).view(2, 1, 1, 1))
        net[1].weight.copy_(torch.tensor([0.5, -1.5]))
        net[4].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-2.0, 1.0]]))
    return net


def test_penalties_match_hand_computed_values():
    net = _net()
    assert float(l1(net)) == pytest.approx(3 + 4 + 1 + 2 + 2 + 1)  # conv + linear weights only
    assert float(l2(net)) == pytest.approx(0.5 * (9 + 16 + 1 + 4 + 4 + 1))
    assert float(bn_l1(net)) == pytest.approx(2.0)
    both = RegularizeConfig(l1=0.1, bn_l1=0.5)
    assert float(penalty(net, both)) == pytest.approx(0.1 * 13 + 0.5 * 2.0)


def test_group_lasso_sums_each_channels_norm_over_the_layers_that_share_it():
    net = _net()
    groups = ChannelGroups.of(net, (torch.zeros(1, 1, 1, 1),))
    # channel 0: conv 3, bn 0.5, linear column (1, 0, -2); channel 1: conv -4, bn -1.5, (0, 2, 1)
    expected = (9 + 0.25 + 1 + 4) ** 0.5 + (16 + 2.25 + 4 + 1) ** 0.5
    assert float(group_lasso(groups)) == pytest.approx(expected, rel=1e-6)


def test_group_lasso_needs_groups():
    with pytest.raises(ValueError, match="ChannelGroups"):
        penalty(_net(), RegularizeConfig(group_lasso=0.1))


@pytest.mark.parametrize(
    ("config", "metric"),
    [
        (RegularizeConfig(bn_l1=0.1), "bn_channels"),
        (RegularizeConfig(group_lasso=0.07), "channel_groups"),
    ],
)
def test_sparsity_penalties_drive_whole_channels_toward_zero(
    blobs_npz: Path, fixtures_on_path: Path, config: RegularizeConfig, metric: str
):
    data = load_data(str(blobs_npz))
    results = {}
    for name, reg in (("none", RegularizeConfig()), ("reg", config)):
        torch.manual_seed(0)
        net = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, width=8)
        history = train(
            net,
            data,
            TrainConfig(
                epochs=12, lr=0.05, batch_size=16, optimizer="sgd", regularize=reg, keep_best=False
            ),
        )
        results[name] = (history, net)
    history, net = results["reg"]
    assert history.sparsity[metric] >= 30.0
    assert max(history.val_accuracy) >= 95.0
    plain = results["none"][1]
    groups = ChannelGroups.of(plain, data.sample_inputs(1))
    assert induced_sparsity(plain, groups)[metric] <= 5.0
