"""Channels-last is scoped to its block, computes what NCHW computes, and steps aside for a
network whose forward needs NCHW strides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from slimkit.data import load_data
from slimkit.models import ModelSpec, build_model
from slimkit.models.layout import channels_last
from slimkit.training import TrainConfig, train

CHANNELS_LAST = torch.channels_last


class _Viewed(nn.Module):
    """A LeNet-style net that flattens its feature map with ``.view``: NCHW strides only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)))
        return self.fc(y.view(y.size(0), -1))


def _convs(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, in_channels=1)


def test_weights_are_channels_last_inside_and_the_same_parameters_after(fixtures_on_path: Path):
    net = _tiny_cnn().train()
    params = dict(net.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        expected = net.eval()(x)
    net.train()
    with channels_last(net, (x[:2],)) as used:
        assert used
        assert all(w.is_contiguous(memory_format=CHANNELS_LAST) for w in _convs(net))
        assert not all(w.is_contiguous() for w in _convs(net))
        assert net.training  # the probe's eval mode is undone
        with torch.no_grad():
            torch.testing.assert_close(net.eval()(x), expected, rtol=1e-5, atol=1e-5)
    assert all(w.is_contiguous() for w in _convs(net))
    assert dict(net.named_parameters()) == params  # the same objects
    for name, p in params.items():
        assert torch.equal(p, before[name]), name


def test_a_forward_that_needs_nchw_strides_keeps_them():
    net = _Viewed().train()
    x = torch.randn(4, 1, 8, 8)
    with pytest.raises(RuntimeError, match="view size"):  # the failure the probe steps around
        net.to(memory_format=CHANNELS_LAST).eval()(x)
    net.to(memory_format=torch.contiguous_format).train()
    stats = net.bn.running_mean.clone(), net.bn.num_batches_tracked.clone()
    with channels_last(net, (x[:2],)) as used:
        assert not used
        assert all(w.is_contiguous() for w in _convs(net))
        assert net.training
        net(x)
    assert torch.equal(net.bn.num_batches_tracked, stats[1] + 1)  # the probe ran in eval mode


def test_a_network_without_convolutions_is_left_alone():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with channels_last(net, (torch.randn(2, 1, 8, 8),)) as used:
        assert not used


def test_training_leaves_a_convolutional_net_in_the_default_layout(
    blobs_npz: Path, fixtures_on_path: Path
):
    data = load_data(str(blobs_npz))
    net = _tiny_cnn()
    train(net, data, TrainConfig(epochs=1, lr=0.02, batch_size=16))
    assert all(t.is_contiguous() for t in net.state_dict().values())
    # a net that cannot run channels-last trains in NCHW, as it did before
    history = train(_Viewed(), data, TrainConfig(epochs=2, lr=0.02, batch_size=16))
    assert len(history.loss) == 2 and history.loss[-1] < history.loss[0]


def test_weights_entered_in_inference_mode_can_still_train(fixtures_on_path: Path):
    net = _tiny_cnn()
    with torch.inference_mode(), channels_last(net, (torch.randn(2, 1, 8, 8),)) as used:
        assert used
    assert not any(p.is_inference() for p in net.parameters())
    net(torch.randn(4, 1, 8, 8)).sum().backward()  # an inference tensor would refuse this
    with torch.no_grad():
        for p in net.parameters():
            p.sub_(0.1 * p.grad)
