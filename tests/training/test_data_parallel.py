"""Two CPU processes (gloo) train the same model a single process does, to rounding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests.helpers import tiny_recipe

import slimkit


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(fixtures_on_path: Path, tmp_path: Path):
    import ddp_train

    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "PYTHONPATH": str(fixtures_on_path), "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run(
        [*launch, str(fixtures_on_path / "ddp_train.py"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    two = load_file(out)

    net = ddp_train.model()
    history = ddp_train.train(net, ddp_train.data(), ddp_train.CONFIG)
    assert history.val_accuracy[-1] > 80.0  # it learned something worth comparing
    one = net.state_dict()
    for name, tensor in one.items():
        assert torch.allclose(two[name], tensor, atol=1e-5), name
    assert not torch.allclose(two["0.weight"], ddp_train.model().state_dict()["0.weight"])


@pytest.mark.slow
def test_a_recipe_runs_data_parallel_and_only_rank_0_writes(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path
):
    recipe = tiny_recipe(
        blobs_npz,
        model="tiny_models:flat_mlp",
        baseline={"train": {"epochs": 4, "lr": 0.02, "batch_size": 32, "optimizer": "sgd"}},
        steps=[{"finetune": {"epochs": 2, "lr": 0.005, "batch_size": 32, "optimizer": "sgd"}}],
    )
    (tmp_path / "recipe.yaml").write_text(slimkit.Recipe.from_dict(recipe).to_yaml())
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(fixtures_on_path), str(Path(__file__).parents[2])]),
        "OMP_NUM_THREADS": "1",
        "SLIMKIT_CACHE": str(tmp_path / "cache-2"),
    }
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run(
        [*launch, "-m", "slimkit", "run", "recipe.yaml", "--out", "parallel"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "runs").exists()  # the follower wrote no run directory of its own
    parallel = json.loads((tmp_path / "parallel" / "results.json").read_text())["steps"]
    single = slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "single").results["steps"]
    for p, s in zip(parallel, single, strict=True):
        assert p["name"] == s["name"] and p["params"] == s["params"]
        assert p["accuracy"] == pytest.approx(s["accuracy"], abs=2.0)  # one test example
