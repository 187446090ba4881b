"""A small trained CNN on the blobs data, shared by the quantization tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimkit.data import load_data
from slimkit.models import ModelSpec, build_model
from slimkit.training import TrainConfig, train


@pytest.fixture
def trained(blobs_npz: Path, fixtures_on_path: Path):
    """``(net, data)``: tiny_cnn (width 8) trained to ~100% on the three-blob images."""
    data = load_data(str(blobs_npz))
    net = build_model(
        ModelSpec.parse({"source": "tiny_models:tiny_cnn", "kwargs": {"width": 8}}),
        num_classes=3,
        in_channels=1,
    )
    train(net, data, TrainConfig(epochs=5, lr=0.02, batch_size=16))
    return net, data
