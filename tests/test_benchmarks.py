"""The benchmarks' plumbing at toy scale (W3's with ``--quick --workloads W3``: 32-pixel solar
cells, one epoch; the layout benchmark's with ``--quick``): each script builds its models and
anchors, times them and writes the rows and targets its full run would. The figures themselves
come from the full runs, not from here. ``make test-bench`` runs them (minutes: every model is
exported, converted and served for real), ``make test`` leaves them out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"

pytestmark = [pytest.mark.slow, pytest.mark.bench]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One baseline cache for the module: the toy W3 baseline trains once per worker."""
    return tmp_path_factory.mktemp("cache")


def quick_w3(script: str, cache: Path, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / "out.json"
    command = [sys.executable, str(BENCHMARKS / script), "--quick", "--workloads", "W3"]
    done = subprocess.run(
        [*command, "--json", str(out), *extra],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "SLIMKIT_CACHE": str(cache), "COLUMNS": "200"},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())
    # its own wall time, so that a workload's scripts add up to its whole benchmark
    assert found["run_s"] > 0
    return found


def test_quantization_w3_times_every_model_at_batch_1_and_32(cache: Path, tmp_path: Path):
    found = quick_w3("quantization.py", cache, tmp_path)
    rows = found["rows"]
    assert {r["batch_size"] for r in rows} == {1, 32}
    methods = {r["method"] for r in rows}
    assert {"fp32", "static-int8", "anchor:openvino+nncf:int8", "anchor:openvino:fp32"} <= methods
    for r in rows:
        assert r["workload"] == "W3" and r["latency_ms"] > 0 and r["int8_peak_pct"] > 0
    # the fastest int8 model at each batch size carries its runtime's own profile
    profiled = [r for r in rows if "time_by_op" in r]
    assert {r["batch_size"] for r in profiled} == {1, 32}
    assert all(abs(sum(r["time_by_op"].values()) - 100) < 1 for r in profiled)
    # beside where the arithmetic is: Lite0's depthwise convolutions are its grouped ones
    for r in profiled:
        assert abs(sum(r["macs_by_kind"].values()) - 100) < 1 and r["macs_by_kind"]["grouped"] > 0
    assert "W3 int8 of the unpruned network at batch 32 >= 40% of the int8 peak" in found["targets"]


def test_pruning_w3_serves_the_pruned_net_on_every_runtime(cache: Path, tmp_path: Path):
    rows = quick_w3("pruning.py", cache, tmp_path)["rows"]
    served = {(r["method"], r["runtime"], r["batch_size"]) for r in rows}
    for method in ("fp32", "prune:channels-50%+kd", "anchor:torch-pruning:MetaPruner-50%"):
        for runtime in ("eager", "onnxruntime", "openvino"):
            assert {(method, runtime, 1), (method, runtime, 32)} <= served
    pruned = next(r for r in rows if r["method"] == "prune:channels-50%+kd")
    assert pruned["params"] < next(r for r in rows if r["method"] == "fp32")["params"] / 2


def test_training_w3_compares_the_three_ways_to_transfer(cache: Path, tmp_path: Path):
    found = quick_w3("training.py", cache, tmp_path)
    ways = [r["method"] for r in found["rows"]]
    assert ways == [
        "feature extraction (frozen backbone), 1 seed",
        "full fine-tuning, 1 seed",
        "gradual unfreezing + layer-wise LR, 1 seed",
    ]
    assert all(r["wall_s"] > 0 and 0 <= r["accuracy"] <= 100 for r in found["rows"])
    # a level predicted right is a defect call right: the two-class view never scores lower
    assert all(r["accuracy"] <= r["defect_accuracy"] <= 100 for r in found["rows"])
    assert any(name.startswith("W3 fine-tuned Lite0") for name in found["targets"])


def test_end_to_end_w3_searches_and_times_against_the_anchors(cache: Path, tmp_path: Path):
    found = quick_w3("end_to_end.py", cache, tmp_path, "--trials", "1")
    methods = {r["method"] for r in found["rows"]}
    assert "fp32 baseline" in methods and "anchor:openvino+nncf:int8" in methods
    assert any(m.startswith("slimkit auto") for m in methods)
    assert "W3 auto >= 3x faster than the fastest anchor" in found["targets"]


def test_layout_times_every_phase_both_ways(tmp_path: Path):
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "layout.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())
    assert {(r["workload"], r["precision"]) for r in found["rows"]} == {
        ("W1", "fp32"),
        ("W3", "fp32"),
        ("W3", "bf16"),
    }
    for r in found["rows"]:
        assert r["nchw_ms"] > 0 and r["channels_last_ms"] > 0
        assert r["speedup"] == pytest.approx(r["nchw_ms"] / r["channels_last_ms"], rel=0.01)
    assert len(found["targets"]) == 1
