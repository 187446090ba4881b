"""Two CPU processes (gloo) train the same model a single process does, to rounding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


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
