"""Gradual pruning: the schedule's values, and a model pruned while it fine-tunes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import slimkit
from slimkit.data import load_data
from slimkit.errors import StepError
from slimkit.models import ModelSpec, build_model, save_model
from slimkit.pruning import ChannelConfig, MagnitudeConfig, prune
from slimkit.pruning.configs import Ramp
from slimkit.pruning.schedules import gradual_prune, sparsity_at


def test_cubic_ramp_matches_zhu_and_gupta():
    # s(t) = s_f + (s_i - s_f) (1 - t/T)^3 with T = 0.75 * 100 = 75 steps
    values = [sparsity_at(t, 100, 0.0, 0.8, Ramp.CUBIC, 0.75) for t in (0, 25, 50, 75, 100)]
    assert values == pytest.approx(
        [0.0, 0.8 - 0.8 * (2 / 3) ** 3, 0.8 - 0.8 * (1 / 3) ** 3, 0.8, 0.8]
    )
    assert values[1] - values[0] > values[3] - values[2]  # fast first, slow near the target


def test_linear_ramp_and_initial_sparsity():
    assert [sparsity_at(t, 10, 0.2, 0.6, Ramp.LINEAR, 1.0) for t in (0, 5, 10)] == pytest.approx(
        [0.2, 0.4, 0.6]
    )


def test_gradual_pruning_reaches_the_target_while_fine_tuning(
    blobs_npz: Path, fixtures_on_path: Path
):
    data = load_data(str(blobs_npz))
    net = build_model(
        ModelSpec.parse({"source": "tiny_models:tiny_cnn", "kwargs": {"width": 8}}),
        num_classes=3,
        in_channels=1,
    )
    config = MagnitudeConfig.from_dict(
        {
            "sparsity": 0.7,
            "scope": "layer",
            "gradual": {"every": 5, "finetune": {"epochs": 3, "lr": 0.02, "batch_size": 16}},
        }
    )
    history = gradual_prune(net, config, data)
    for name in ("0", "3", "8"):
        w = net.get_submodule(name).weight
        assert int((w == 0).sum()) == round(0.7 * w.numel()), name
    assert len(history.val_accuracy) == 3 and history.val_accuracy[-1] >= 80.0


def test_gradual_pruning_needs_the_data_it_fine_tunes_on():
    config = MagnitudeConfig.from_dict({"sparsity": 0.5, "gradual": {"finetune": {"epochs": 1}}})
    with pytest.raises(StepError, match=r"magnitude pruning needs data .* or the data set"):
        prune(torch.nn.Sequential(torch.nn.Linear(4, 4)), config)


def test_a_pruned_model_reloads_in_a_fresh_process_without_pickle(tmp_path: Path):
    net = slimkit.build_model("resnet-mini", num_classes=10, in_channels=1).eval()
    pruned = prune(net, ChannelConfig(ratio=0.5), (torch.randn(1, 1, 28, 28),))
    path = save_model(
        pruned,
        tmp_path / "p.safetensors",
        {"source": "resnet-mini", "kwargs": {"num_classes": 10, "in_channels": 1}},
    )
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "x.pt")
    torch.save(pruned(x).detach(), tmp_path / "want.pt")
    script = (
        "import pickle, sys, torch, slimkit\n"
        "real_load = torch.load\n"
        "def refuse(*a, **k):\n"
        "    raise RuntimeError('the model tried to unpickle')\n"
        "torch.load = pickle.load = pickle.loads = refuse  # loading must not need pickle\n"
        f"m = slimkit.build_model({str(path)!r})\n"
        "torch.load = real_load\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)\n"
        f"want = torch.load({str(tmp_path / 'want.pt')!r}, weights_only=True)\n"
        "sys.exit(0 if torch.equal(m(x), want) and m.stem[0].out_channels == 8 else 1)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
