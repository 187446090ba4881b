"""Runs that survive being stopped: SIGKILL mid-step and Ctrl-C, then ``--resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tests.helpers import tiny_recipe

import slimkit
from slimkit.errors import RunDirError, RunInterrupted
from slimkit.pipeline import resume

FIXTURES = Path(__file__).parent / "fixtures"
COMPARED = ("accuracy", "params", "nonzero_params", "size_bytes", "macs", "runtime")


def _figures(results: dict) -> list[dict]:
    return [{k: s[k] for k in ("name", *COMPARED)} for s in results["steps"]]


def _start_and_wait_for_an_epoch(recipe: dict, tmp_path: Path, name: str) -> subprocess.Popen:
    """Start ``slimkit run`` in a child process; return once the finetune step has finished an
    epoch (its epoch checkpoint exists), i.e. in the middle of that step."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "PYTHONPATH": str(FIXTURES), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "slimkit", "run", str(path), "--out", str(tmp_path / name)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # Children of a shell's background job start with SIGINT ignored; a user's terminal
        # delivers it, so restore the default and let Python raise KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    step = tmp_path / name / "checkpoints" / "02-finetune"
    deadline = time.monotonic() + 300
    while not any(step.glob("train-*/last.ckpt")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    return proc


def _slow_recipe(blobs_npz: Path) -> dict:
    recipe = tiny_recipe(blobs_npz)
    recipe["baseline"]["cache"] = False
    recipe["steps"][1]["finetune"]["epochs"] = 40
    return recipe


@pytest.mark.slow
def test_a_run_killed_mid_step_resumes_to_the_uninterrupted_results(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path, cli
):
    recipe = _slow_recipe(blobs_npz)
    proc = _start_and_wait_for_an_epoch(recipe, tmp_path, "killed")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed = tmp_path / "killed"
    assert not (killed / "results.json").exists()  # it really died mid-run

    out = cli("run", "--resume", str(killed))
    assert out.code == 0, out.err
    resumed = json.loads((killed / "results.json").read_text())
    assert resumed["resumed"] == {"reused_steps": ["prune"]}
    finetune = next(s for s in resumed["steps"] if s["name"] == "finetune")
    assert any("resumed from the epoch-" in n for n in finetune["notes"])
    assert not (killed / "checkpoints").exists()  # a finished run keeps results, not checkpoints

    reference = slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "reference")
    assert _figures(resumed) == _figures(reference.results)
    # Epoch checkpoints restore optimizer, schedule and RNG: the weights are the same bits.
    a = load_file(killed / "artifacts" / "02-finetune.safetensors")
    b = load_file(tmp_path / "reference" / "artifacts" / "02-finetune.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.slow
def test_ctrl_c_stops_with_one_line_naming_the_resume_command(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path
):
    proc = _start_and_wait_for_an_epoch(_slow_recipe(blobs_npz), tmp_path, "stopped")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].endswith(f"slimkit run --resume {tmp_path / 'stopped'}")
    assert any((tmp_path / "stopped" / "checkpoints").glob("02-finetune/train-*/last.ckpt"))


@pytest.mark.parametrize(
    ("quantize", "reused"),
    [
        (
            {"mode": "static-int8", "backend": "onnxruntime", "calibration_samples": 32},
            ["prune", "finetune", "quantize"],
        ),
        # A .pt2 program is never read back (torch.export.load unpickles): rebuilt instead.
        (
            {"mode": "static-int8", "backend": "torchao", "calibration_samples": 32},
            ["prune", "finetune"],
        ),
        ({"mode": "fp16"}, ["prune", "finetune", "quantize"]),
    ],
    ids=["onnxruntime", "pt2e", "fp16"],
)
@pytest.mark.slow
def test_ctrl_c_after_the_steps_reuses_every_kept_model(
    quantize: dict,
    reused: list[str],
    blobs_npz: Path,
    fixtures_on_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    recipe = tiny_recipe(
        blobs_npz,
        steps=[
            {"prune": {"method": "channels", "ratio": 0.5}},
            {"finetune": {"epochs": 1, "lr": 0.005, "batch_size": 16}},
            {"quantize": quantize},
        ],
    )
    reference = slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "reference")

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with (
        monkeypatch.context() as patched,
        pytest.raises(RunInterrupted, match=r"slimkit run --resume .*stopped"),
    ):
        patched.setattr("slimkit.pipeline.Session.time", stop)
        slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "stopped")

    result = resume(tmp_path / "stopped")
    assert result.results["resumed"] == {"reused_steps": reused}
    assert _figures(result.results) == _figures(reference.results)


@pytest.mark.slow
def test_a_changed_or_corrupted_snapshot_is_recomputed_not_trusted(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    recipe = tiny_recipe(blobs_npz)

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched, pytest.raises(RunInterrupted):
        patched.setattr("slimkit.pipeline.Session.time", stop)
        slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "run")
    snapshot = tmp_path / "run" / "checkpoints" / "01-prune" / "model.safetensors"
    data = bytearray(snapshot.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the pruned weights
    snapshot.write_bytes(bytes(data))
    saved = tmp_path / "run" / "recipe.yaml"
    edited = yaml.safe_load(saved.read_text())
    edited["steps"][2]["quantize"]["calibration_samples"] = 32
    saved.write_text(yaml.safe_dump(edited))

    result = resume(tmp_path / "run")
    # prune no longer matches its hash and reruns; it gives the same model, so finetune (keyed
    # by that model's content) is reused; the edited quantize reruns.
    assert result.results["resumed"] == {"reused_steps": ["finetune"]}
    assert result.results["recipe"]["steps"][2]["quantize"]["calibration_samples"] == 32


def test_resume_refuses_what_it_cannot_continue(tmp_path: Path, cli):
    with pytest.raises(RunDirError, match="not a slimkit run directory"):
        resume(tmp_path)
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "recipe.yaml").write_text("name: x\n")
    (tmp_path / "done" / "results.json").write_text("{}")
    with pytest.raises(RunDirError, match="does not have the shape slimkit writes"):
        resume(tmp_path / "done")
    out = cli("run", "recipe.yaml", "--resume", str(tmp_path / "done"))
    assert out.code == 2 and "without a recipe" in out.err
