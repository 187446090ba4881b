"""What the tests share: the tiny image data set, the tiny recipe, and a trained tiny CNN.

Fixtures that use these live in ``conftest.py``; a test module imports from here, never from
another test module.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
from torch import nn

FIXTURES = Path(__file__).parent / "fixtures"


def blobs(n: int, seed: int = 0, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of 1x8x8 images, each a bright square in a different corner plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 1, size, size)).astype(np.float32)
    for i, c in enumerate(y):
        r, col = [(0, 0), (0, 4), (4, 2)][c]
        x[i, 0, r : r + 4, col : col + 4] += 2.0
    return x, y


def write_blobs(path: Path, n: int = 300) -> Path:
    """A user data set on disk: ``n`` tiny images of the three blobs, as ``x``/``y`` arrays."""
    x, y = blobs(n)
    np.savez(path, x=x, y=y)
    return path


def tiny_recipe(blobs_npz: Path, **overrides) -> dict:
    """A complete recipe on the blobs: tiny_cnn trained 4 epochs, pruned, fine-tuned, int8."""
    recipe = {
        "name": "tiny",
        "model": {"source": "tiny_models:tiny_cnn", "kwargs": {"width": 8}},
        "data": f"npz:{blobs_npz}",
        "baseline": {"train": {"epochs": 4, "lr": 0.02, "batch_size": 16}},
        "evaluation": {"batch_size": 4, "warmup": 1, "rounds": 3, "per_round": 2},
        "steps": [
            {"prune": {"method": "magnitude", "sparsity": 0.5}},
            {"finetune": {"epochs": 1, "lr": 0.005, "batch_size": 16}},
            {"quantize": {"mode": "static-int8", "calibration_samples": 64}},
        ],
    }
    recipe.update(overrides)
    return recipe


def tiny_models():
    """``tests/fixtures/tiny_models.py``, imported as a user's own module would be (by the
    name recipes use for it, ``tiny_models``)."""
    if str(FIXTURES) not in sys.path:
        sys.path.insert(0, str(FIXTURES))
    try:
        return importlib.import_module("tiny_models")
    finally:
        sys.path.remove(str(FIXTURES))


def trained_tiny_cnn(data) -> nn.Module:
    """tiny_cnn (width 8) trained to ~100% on the blobs: the float model quantization starts
    from."""
    import torch

    from slimkit.training import TrainConfig, train

    torch.manual_seed(0)  # the same weights whichever tests ran before in this process
    net = tiny_models().tiny_cnn(num_classes=3, in_channels=1, width=8)
    train(net, data, TrainConfig(epochs=5, lr=0.02, batch_size=16))
    return net.eval()


def outlier_net(blobs_npz: Path):
    """A trained MLP whose hidden channel 0 is scaled 1000x, compensated in the next layer.

    ReLU is positive-homogeneous, so the float model computes the same function; but the input
    of the last layer now has one huge channel, which a per-tensor int8 activation scale cannot
    represent beside the others: static int8 loses badly, and mostly because of that layer.
    """
    import torch

    from slimkit.data import load_data
    from slimkit.training import TrainConfig, train

    torch.manual_seed(0)
    data = load_data(str(blobs_npz))
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 3))
    train(net, data, TrainConfig(epochs=6, lr=0.02, batch_size=16))
    x = data.test.inputs[0][:64]
    before = net(x)
    with torch.no_grad():
        net[1].weight[0] *= 1000.0
        net[1].bias[0] *= 1000.0
        net[3].weight[:, 0] /= 1000.0
    torch.testing.assert_close(net(x), before, rtol=1e-3, atol=1e-3)
    return net.eval(), data


def family_bundle(family: str):
    """48 / 16 / 16 examples of the family's inputs in 3 classes, each class marked (a brighter
    channel, a class token first) so that training has something to learn."""
    import torch

    from slimkit.data.bundle import ArrayDataset, DataBundle

    g = torch.Generator().manual_seed(0)

    def split(n: int) -> ArrayDataset:
        labels = torch.randint(0, 3, (n,), generator=g)
        if family == "vit":
            pixels = torch.randn(n, 3, 16, 16, generator=g)
            pixels[torch.arange(n), labels] += 2.0
            return ArrayDataset((pixels,), labels)
        ids = torch.randint(5, 60, (n, 10), generator=g)
        ids[:, 0] = 2 + labels
        return ArrayDataset((ids, torch.ones_like(ids)), labels)

    names = ("pixel_values",) if family == "vit" else ("input_ids", "attention_mask")
    return DataBundle("toy", split(48), split(16), split(16), 3, names)
