"""The trainer learns, keeps pruned zeros at zero, and augments as documented."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from slimkit.data import load_data
from slimkit.data.bundle import DataBundle
from slimkit.errors import StepError
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.export import export_onnx
from slimkit.models import ModelSpec, build_model
from slimkit.pruning import MagnitudeConfig, prune
from slimkit.training import TrainConfig, train
from slimkit.training.augment import random_shift
from slimkit.training.trainer import _decay, _optimizer


def _tiny(blobs_npz: Path, fixtures: Path):
    data = load_data(str(blobs_npz))
    net = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, in_channels=1)
    return data, net


def _flat(data: DataBundle) -> DataBundle:
    """The blobs with the train split cut to a multiple of 32, so every batch is full."""
    train_split = data.train.subset(torch.arange(len(data.train) // 32 * 32))
    return DataBundle("flat", train_split, data.val, data.test, 3, data.input_names)


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
        assert float(net(data.test.inputs[0][:]).abs().mean()) < 0.5


class _Interrupt(Exception):
    pass


def test_a_killed_run_resumes_from_its_last_checkpoint(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path
):
    config = TrainConfig(epochs=3, lr=0.02, batch_size=16, augment=("random-shift",))
    data, net = _tiny(blobs_npz, fixtures_on_path)
    start = copy.deepcopy(net.state_dict())
    train(net, data, config)
    uninterrupted = copy.deepcopy(net.state_dict())

    net.load_state_dict(start)
    per_epoch = len(data.loader("train", 16))

    def die_in_epoch_3(step: int, total: int) -> None:
        if step == 2 * per_epoch + 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train(net, data, config, on_step=die_in_epoch_3, checkpoint_dir=tmp_path / "ckpt")
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["epoch"] == 2
    net.load_state_dict(start)  # the process died: nothing of its memory is reused
    history = train(net, data, config, checkpoint_dir=tmp_path / "ckpt")
    assert len(history.loss) == 3
    for name, tensor in uninterrupted.items():
        assert torch.allclose(net.state_dict()[name].float(), tensor.float(), atol=1e-6), name


def test_frozen_layers_do_not_change_and_the_rest_trains(blobs_npz: Path, fixtures_on_path: Path):
    data, net = _tiny(blobs_npz, fixtures_on_path)
    before = copy.deepcopy(net.state_dict())
    train(net, data, TrainConfig(epochs=1, lr=0.05, batch_size=16, freeze=("0", "1")))
    after = net.state_dict()
    for name in ("0.weight", "0.bias", "1.weight", "1.bias"):
        assert torch.equal(after[name], before[name]), name
    assert not torch.equal(after["3.weight"], before["3.weight"])
    assert all(p.requires_grad for p in net.parameters())  # the caller's flags are restored


def test_freezing_everything_is_refused(blobs_npz: Path, fixtures_on_path: Path):
    data, net = _tiny(blobs_npz, fixtures_on_path)
    with pytest.raises(StepError, match="Every parameter of the model is frozen"):
        train(net, data, TrainConfig(freeze=("Conv2d", "BatchNorm2d", "Linear")))


def test_gradual_unfreezing_thaws_one_block_per_epoch_from_the_top(
    blobs_npz: Path, fixtures_on_path: Path
):
    data, net = _tiny(blobs_npz, fixtures_on_path)
    # tiny_cnn's blocks, input to output: 0 (conv), 1 (bn), 3 (conv), 4 (bn), 8 (linear)
    snapshots = []

    def snapshot(step: int, total: int) -> None:
        if step % len(data.loader("train", 16)) == 0:
            snapshots.append({n: p.detach().clone() for n, p in net.named_parameters()})

    start = {n: p.detach().clone() for n, p in net.named_parameters()}
    config = TrainConfig(epochs=2, lr=0.05, batch_size=16, unfreeze="gradual", keep_best=False)
    train(net, data, config, on_step=snapshot)
    after_1, after_2 = snapshots
    changed_1 = {n for n in start if not torch.equal(after_1[n], start[n])}
    changed_2 = {n for n in start if not torch.equal(after_2[n], after_1[n])}
    assert changed_1 == {"8.weight", "8.bias"}
    assert changed_2 == {"8.weight", "8.bias", "4.weight", "4.bias"}


def test_layerwise_learning_rates_decay_toward_the_input():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    opt = _optimizer(net, TrainConfig(lr=1.0, layer_lr_decay=0.5))
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.5, 1.0]


def test_weight_decay_is_decoupled_for_sgd_too():
    """With a zero loss gradient, decoupled decay shrinks every weight by (1 - lr·wd)."""
    net = nn.Linear(2, 2, bias=False)
    nn.init.constant_(net.weight, 2.0)
    config = TrainConfig(lr=0.1, weight_decay=0.5, optimizer="sgd")
    opt = _optimizer(net, config)
    net.weight.grad = torch.zeros_like(net.weight)
    opt.step()
    _decay(opt, config)
    assert torch.allclose(net.weight, torch.full((2, 2), 2.0 * (1 - 0.1 * 0.5)))


def test_bf16_mixed_precision_trains(blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path):
    data, net = _tiny(blobs_npz, fixtures_on_path)
    history = train(net, data, TrainConfig(epochs=3, lr=0.02, batch_size=16, precision="bf16"))
    assert max(history.val_accuracy) >= 90.0
    assert net[0].weight.dtype == torch.float32  # autocast: master weights stay fp32
    # the trained model computes in fp32 again: exactly its own layers run in fp32, and an
    # ONNX export of it holds no bfloat16
    x = data.test.inputs[0][:8]
    with torch.inference_mode():
        expected = x
        for layer in net:
            expected = layer(expected)
        assert torch.equal(net(x), expected)
    export_onnx(net, (x,), ("pixels",), tmp_path / "net.onnx")
    train(net, data, TrainConfig(epochs=1, lr=0.01, batch_size=16))  # and fp32 works after


def test_gradient_accumulation_matches_the_large_batch(blobs_npz: Path, fixtures_on_path: Path):
    """Two accumulated batches of 16 take the step one batch of 32 takes (no BatchNorm here)."""
    data = load_data(str(blobs_npz))
    flat = _flat(data)
    results = []
    for batch, accumulate in ((32, 1), (16, 2)):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
        config = TrainConfig(
            epochs=2, lr=0.05, batch_size=batch, grad_accumulation=accumulate, optimizer="sgd"
        )
        train(net, flat, config)
        results.append(net.state_dict())
    for name in results[0]:
        assert torch.allclose(results[0][name], results[1][name], atol=1e-5), name


def test_early_stopping_stops_after_patience_epochs(blobs_npz: Path, fixtures_on_path: Path):
    data, net = _tiny(blobs_npz, fixtures_on_path)
    history = train(net, data, TrainConfig(epochs=30, lr=0.05, batch_size=16, patience=2))
    assert history.stopped_early and len(history.loss) == history.best_epoch + 2 < 30


@pytest.mark.parametrize(
    ("schedule", "steps"),
    [("onecycle", (1, 2, 3, 9, 10, 11)), ("cosine", (1, 10)), ("constant", (1, 10))],
)
@pytest.mark.slow
def test_short_runs_train(
    schedule: str, steps: tuple[int, ...], blobs_npz: Path, fixtures_on_path: Path
):
    """OneCycleLR divided by zero on a 10-step run (a warmup of exactly one step at 0.1)."""
    data, net = _tiny(blobs_npz, fixtures_on_path)
    for n in steps:
        train_split = data.train.subset(torch.arange(n * 16))
        short = DataBundle("short", train_split, data.val, data.test, 3, data.input_names)
        history = train(
            copy.deepcopy(net), short, TrainConfig(epochs=1, batch_size=16, schedule=schedule)
        )
        assert len(history.loss) == 1 and history.loss[0] == history.loss[0]  # finite, not NaN


def test_the_note_names_the_epoch_that_was_kept(blobs_npz: Path, fixtures_on_path: Path):
    from slimkit.training.step import describe

    data, net = _tiny(blobs_npz, fixtures_on_path)
    last = TrainConfig(epochs=3, lr=0.02, batch_size=16, keep_best=False)
    history = train(net, data, last)
    assert describe(history, "trained", last) == (
        f"trained 3 epochs; kept the last epoch, validation accuracy {history.val_accuracy[-1]:.2f}%"
    )
    best = last.model_copy(update={"keep_best": True})
    assert "best validation accuracy" in describe(history, "trained", best)


def test_random_flip_mirrors_whole_images_and_keeps_every_pixel():
    from slimkit.training.augment import AUGMENTS

    images = torch.arange(4 * 1 * 3 * 3, dtype=torch.float32).reshape(4, 1, 3, 3)
    flipped = AUGMENTS.get("random-flip")(images, torch.Generator().manual_seed(0))
    forms = [lambda x: x, lambda x: x.flip(-1), lambda x: x.flip(-2), lambda x: x.flip(-1, -2)]
    for original, out in zip(images, flipped, strict=True):
        assert any(torch.equal(form(original), out) for form in forms)
    many = AUGMENTS.get("random-flip")(images.repeat(50, 1, 1, 1), torch.Generator())
    assert not torch.equal(many, images.repeat(50, 1, 1, 1))  # some of 200 images do flip


def test_random_rot90_turns_whole_square_images_every_way_and_refuses_others():
    from slimkit.training.augment import AUGMENTS

    rot90 = AUGMENTS.get("random-rot90")
    images = torch.arange(200 * 9, dtype=torch.float32).reshape(200, 1, 3, 3)
    turned = rot90(images, torch.Generator().manual_seed(0))
    seen = set()
    for original, out in zip(images, turned, strict=True):
        k = next(k for k in range(4) if torch.equal(original.rot90(k, dims=(-2, -1)), out))
        seen.add(k)
    assert seen == {0, 1, 2, 3}
    with pytest.raises(StepError, match="square images, and these are 3 x 4"):
        rot90(torch.zeros(2, 1, 3, 4), torch.Generator())


@pytest.mark.parametrize(
    ("names", "distinct"),
    [((), 1), (("random-flip",), 4), (("random-rot90",), 4), (("random-flip", "random-rot90"), 8)],
)
def test_symmetries_are_the_views_the_augmentations_draw_from(names, distinct):
    from slimkit.training.augment import AUGMENTS, symmetries

    views = symmetries(names)
    assert views is not None
    images = torch.arange(200 * 9, dtype=torch.float32).reshape(200, 1, 3, 3)
    drawn = images
    generator = torch.Generator().manual_seed(0)
    for name in names:
        drawn = AUGMENTS.get(name)(drawn, generator)
    for original, out in zip(images, drawn, strict=True):
        assert any(torch.equal(view(original), out) for view in views)
    forms = {tuple(view(images[:1]).flatten().tolist()) for view in views}
    assert len(forms) == len(views) == distinct  # the eight symmetries of a square, each once


def test_augmentations_that_draw_from_no_finite_set_have_no_symmetries():
    from slimkit.training.augment import symmetries

    assert symmetries(["random-shift"]) is None
    assert symmetries(["random-flip", "random-shift"]) is None
