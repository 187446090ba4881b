"""Plugins: a package found through the ``slimkit.plugins`` entry point adds one extension of
every kind (tests/plugins/slimkit_example_plugin), and they work end to end in a fresh process,
as they would for a user who pip-installed it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PLUGINS = Path(__file__).parent / "plugins"
SLIMKIT = [sys.executable, "-m", "slimkit"]
RECIPE = {
    "name": "plugged",
    "model": "example-zoo:mlp",
    "data": "example-blobs",
    "baseline": {"train": {"epochs": 3, "lr": 0.01, "batch_size": 32}},
    "evaluation": {
        "runtime": "example-bf16",
        "batch_size": 4,
        "warmup": 1,
        "rounds": 3,
        "per_round": 2,
    },
    "steps": [
        {"prune": {"method": "example-random", "sparsity": 0.5}},
        {"quantize": {"mode": "example-bf16-weights"}},
    ],
}


def slimkit(*args: str, path: Path = PLUGINS, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(path), "COLUMNS": "200", **env}
    return subprocess.run(
        [*SLIMKIT, *args], capture_output=True, text=True, env=environ, timeout=300
    )


def test_slimkit_list_shows_one_extension_of_every_kind_from_the_plugin():
    done = slimkit("list")
    assert done.returncode == 0, done.stderr
    for name in (
        "example-random",  # pruning method and search space
        "example-bf16-weights",  # quantization mode
        "example-bf16 ",  # runtime
        "example-blobs",  # data set
        "example-zoo:mlp",  # model source form
        "slimkit_example_plugin (slimkit-example-plugin)",  # the plugin itself
    ):
        assert name in done.stdout


@pytest.mark.slow
def test_a_plugin_that_fails_to_load_is_named_and_skipped(tmp_path: Path):
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[slimkit.plugins]\nbroken = no_such_module\n")
    done = slimkit("list", "plugins", path=tmp_path)
    assert done.returncode == 0
    assert "slimkit plugin 'broken' (no_such_module) failed to load and is skipped" in done.stderr
    assert "FAILED, ModuleNotFoundError" in done.stdout
    skipped = slimkit("list", "plugins", path=tmp_path, SLIMKIT_NO_PLUGINS="1")
    assert "broken" not in skipped.stdout + skipped.stderr


@pytest.mark.slow
def test_a_recipe_runs_on_the_plugins_model_data_pruning_quantization_and_runtime(
    tmp_path: Path,
):
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    done = slimkit("run", str(tmp_path / "recipe.yaml"), "-o", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    steps = json.loads((tmp_path / "run" / "results.json").read_text())["steps"]
    assert [s["name"] for s in steps] == ["baseline", "prune", "quantize"]
    assert {s["runtime"] for s in steps} == {"example-bf16"}
    baseline, pruned, quantized = steps
    assert baseline["accuracy"] > 90  # four well-separated blobs
    weights, biases = 8 * 32 + 32 * 4, 32 + 4
    assert baseline["params"] == weights + biases
    # half of every Linear weight zeroed (seeded random draw: within 10% of the expected count)
    assert abs(pruned["nonzero_params"] - (weights / 2 + biases)) < weights * 0.1
    assert quantized["size_bytes"] < pruned["size_bytes"]  # bf16 weights: two bytes each
    assert "2 weight layers quantized" in quantized["notes"]


@pytest.mark.slow
def test_slimkit_auto_searches_the_plugins_space(tmp_path: Path):
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    done = slimkit(
        "auto",
        "--recipe",
        str(tmp_path / "recipe.yaml"),
        "--space",
        "example-random",
        "--trials",
        "2",
        "--max-accuracy-drop",
        "100",
        "-o",
        str(tmp_path / "auto"),
    )
    assert done.returncode == 0, done.stderr
    trials = json.loads((tmp_path / "auto" / "search" / "trials.json").read_text())["trials"]
    assert len(trials) == 2
    kept = []
    for trial in trials:  # each drew from the plugin's space and applied its pruning method
        assert trial["params"]["sparsity"] in (0.25, 0.5)
        rolled_back = [n for n in trial["notes"] if n.startswith("rolled back prune")]
        # on a 15-microsecond model, timing noise alone can make the pruned one "slower"
        assert len(trial["steps"]) + len(rolled_back) == 1
        kept += trial["steps"]
    assert all(s["prune"]["method"] == "example-random" for s in kept)
    best = yaml.safe_load((tmp_path / "auto" / "best-recipe.yaml").read_text())
    assert best["steps"] == [] or best["steps"][0] in kept
