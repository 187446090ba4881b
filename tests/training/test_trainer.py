"""The trainer learns, keeps pruned zeros at zero, and augments as documented."""

from __future__ import annotations

from pathlib import Path

import torch

from slimkit.data import load_data
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.models import ModelSpec, build_model
from slimkit.pruning import MagnitudeConfig, prune
from slimkit.training import TrainConfig, train
from slimkit.training.augment import random_shift


def _tiny(blobs_npz: Path, fixtures: Path):
    data = load_data(str(blobs_npz))
    net = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, in_channels=1)
    return data, net


def test_training_learns_the_blobs(blobs_npz: Path, fixtures_on_path: Path):
    data, net = _tiny(blobs_npz, fixtures_on_path)
    history = train(net, data, TrainConfig(epochs=6, lr=0.02, batch_size=16))
    assert len(history.loss) == 6 and history.loss[-1] < history.loss[0]
    assert accuracy(*predict(lambda x: net(*x), data.test.batches(64))) >= 90.0
    assert max(history.val_accuracy) == history.val_accuracy[history.best_epoch - 1]


def test_finetuning_keeps_pruned_weights_at_zero(blobs_npz: Path, fixtures_on_path: Path):
    data, net = _tiny(blobs_npz, fixtures_on_path)
    net = prune(net, MagnitudeConfig(sparsity=0.6, scope="layer"))
    zeros = {n: (p == 0) for n, p in net.named_parameters() if p.dim() > 1}
    train(
        net,
        data,
        TrainConfig(epochs=2, lr=0.02, batch_size=16, optimizer="sgd"),
        keep_sparsity=True,
    )
    for name, p in net.named_parameters():
        if name in zeros:
            assert bool((p[zeros[name]] == 0).all()), name


def test_training_is_seeded(blobs_npz: Path, fixtures_on_path: Path):
    results = []
    for _ in range(2):
        data, net = _tiny(blobs_npz, fixtures_on_path)
        torch.manual_seed(123)  # same initial weights
        net = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, in_channels=1)
        train(net, data, TrainConfig(epochs=1, lr=0.01, batch_size=16, seed=7))
        results.append(net[0].weight.detach().clone())
    assert torch.equal(results[0], results[1])


def test_random_shift_moves_whole_pixels_and_replicates_edges():
    img = torch.zeros(64, 1, 7, 7)
    img[:, 0, 3, 3] = 1.0
    out = random_shift(img, torch.Generator().manual_seed(0))
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(64))  # one pixel stays one pixel
    positions = {tuple(int(i) for i in (o[0] == 1).nonzero()[0]) for o in out}
    assert positions <= {(r, c) for r in range(1, 6) for c in range(1, 6)}
    assert len(positions) > 10


def test_a_custom_loss_replaces_cross_entropy(blobs_npz: Path, fixtures_on_path: Path):
    data, net = _tiny(blobs_npz, fixtures_on_path)
    seen: list[tuple[int, int]] = []

    def loss_fn(logits, labels, inputs):
        seen.append((logits.shape[0], inputs[0].shape[0]))
        return (logits**2).mean()  # drives every logit to zero

    history = train(
        net, data, TrainConfig(epochs=2, lr=0.05, batch_size=30, keep_best=False), loss_fn=loss_fn
    )
    assert seen and all(a == b for a, b in seen)
    assert history.loss[-1] < history.loss[0]
    with torch.inference_mode():
        assert float(net(data.test.inputs[0]).abs().mean()) < 0.5
