"""A full tiny pipeline run, and the results.json contract it writes."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest
import torch
import yaml
from tests.helpers import tiny_recipe

import slimkit
from slimkit.data import load_data
from slimkit.errors import RunDirError, ShapeMismatchError
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.pipeline import Session
from slimkit.state import ModelState

STEP_KEYS = {
    "name",
    "kind",
    "accuracy",
    "latency_ms",
    "throughput",
    "batch_size",
    "runtime",
    "params",
    "nonzero_params",
    "size_bytes",
    "macs",
    "artifact",
}


@pytest.mark.slow
def test_full_run_writes_the_contract(blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path):
    result = slimkit.run(slimkit.Recipe.from_dict(tiny_recipe(blobs_npz)), out=tmp_path / "run")
    run_dir = result.run_dir
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "artifacts",
        "environment.json",
        "imports.json",
        "recipe.yaml",
        "report.html",
        "report.md",
        "results.json",
        "split.npz",
    ]
    results = json.loads((run_dir / "results.json").read_text())
    assert results == result.results
    assert set(results) >= {"slimkit_version", "recipe", "steps", "summary"}
    steps = results["steps"]
    assert [s["name"] for s in steps] == ["baseline", "prune", "finetune", "quantize"]
    for s in steps:
        assert set(s) >= STEP_KEYS
        assert set(s["latency_ms"]) == {"p50", "p90"} and s["latency_ms"]["p50"] > 0
        assert s["batch_size"] == 4
        assert (run_dir / s["artifact"]).stat().st_size == s["size_bytes"]
    base, pruned, tuned, quant = steps
    assert base["accuracy"] >= 90.0
    # magnitude pruning: exactly half of the conv/linear weights are zero, nothing else changes
    weights = 1 * 8 * 9 + 8 * 16 * 9 + 16 * 3
    assert base["params"] - base["nonzero_params"] == 0
    assert pruned["params"] - pruned["nonzero_params"] == weights // 2
    assert tuned["nonzero_params"] == pruned["nonzero_params"]  # fine-tuning kept the zeros
    assert quant["runtime"] == "onnxruntime" and quant["artifact"].endswith(".onnx")
    # the int8 file, loaded by a plain InferenceSession, scores what slimkit reported
    sess = ort.InferenceSession(
        str(run_dir / quant["artifact"]), providers=["CPUExecutionProvider"]
    )
    data = load_data(f"npz:{blobs_npz}")
    feed = lambda x: torch.from_numpy(sess.run(None, {"inputs": x[0].numpy()})[0])  # noqa: E731
    assert abs(accuracy(*predict(feed, data.test.batches(64))) - quant["accuracy"]) <= 0.3
    assert quant["macs"] == base["macs"] == 8 * 64 * 9 + 16 * 16 * 8 * 9 + 16 * 3
    summary = results["summary"]
    assert summary["baseline"] == "baseline" and summary["final"] == "quantize"
    assert summary["speedup"] == pytest.approx(
        base["latency_ms"]["p50"] / quant["latency_ms"]["p50"]
    )
    assert summary["compression"] == pytest.approx(base["size_bytes"] / quant["size_bytes"])
    assert summary["accuracy_drop"] == pytest.approx(base["accuracy"] - quant["accuracy"], abs=1e-3)
    assert (
        yaml.safe_load((run_dir / "recipe.yaml").read_text())["steps"][0]["prune"]["sparsity"]
        == 0.5
    )
    report = (run_dir / "report.md").read_text()
    assert "| quantize | quantize | onnxruntime |" in report
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["threads"] >= 1 and env["versions"]["torch"].startswith("2.")


@pytest.mark.slow
def test_the_baseline_served_on_other_runtimes_is_the_bar_the_summary_names(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path
):
    """A speedup against eager PyTorch alone flatters: the same baseline on ONNX Runtime or
    OpenVINO is what a user would deploy instead. Each is measured, timed with the steps, and
    the summary compares the final model with the fastest."""
    recipe = tiny_recipe(
        blobs_npz,
        steps=[{"quantize": {"mode": "weight-only-int8", "recover": False}}],
        evaluation={
            "batch_size": 4,
            "warmup": 1,
            "rounds": 3,
            "per_round": 2,
            "baseline_runtimes": ["eager", "onnxruntime", "openvino"],
        },
    )
    results = slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "run").results
    base, final = results["steps"][0], results["steps"][-1]
    refs = results["references"]
    # the baseline's own runtime is not measured twice
    assert [(r["name"], r["runtime"], r["kind"]) for r in refs] == [
        ("baseline@onnxruntime", "onnxruntime", "reference"),
        ("baseline@openvino", "openvino", "reference"),
    ]
    assert all(r["accuracy"] == pytest.approx(base["accuracy"], abs=0.5) for r in refs)
    assert all(r["macs"] == base["macs"] for r in refs)
    assert (tmp_path / "run" / refs[1]["artifact"]).suffix == ".xml"
    fastest = min([base, *refs], key=lambda s: s["latency_ms"]["p50"])
    summary = results["summary"]
    assert summary["fastest_baseline"] == fastest["name"]
    assert summary["speedup_vs_fastest_baseline"] == pytest.approx(
        fastest["latency_ms"]["p50"] / final["latency_ms"]["p50"]
    )
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| baseline@openvino | reference | openvino |" in report
    if fastest is not base:
        assert f"Against the baseline on its fastest runtime ({fastest['name']}" in report


@pytest.mark.slow
def test_baseline_is_cached_by_config(blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path):
    recipe = slimkit.Recipe.from_dict(tiny_recipe(blobs_npz, steps=[{"finetune": {"epochs": 1}}]))
    first = slimkit.run(recipe, out=tmp_path / "a").results["steps"][0]
    second = slimkit.run(recipe, out=tmp_path / "b").results["steps"][0]
    assert "reused from cache" in second["notes"][0] and "trained 4 epochs" in first["notes"][0]
    assert second["accuracy"] == first["accuracy"]
    changed = tiny_recipe(blobs_npz, steps=[{"finetune": {"epochs": 1}}])
    changed["baseline"]["train"]["epochs"] = 3
    third = slimkit.run(slimkit.Recipe.from_dict(changed), out=tmp_path / "c").results["steps"][0]
    assert "trained 3 epochs" in third["notes"][0]


def test_runs_never_overwrite(blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    recipe = slimkit.Recipe.from_dict(tiny_recipe(blobs_npz, steps=[{"finetune": {"epochs": 1}}]))
    with pytest.raises(RunDirError, match="already exists and is not empty"):
        slimkit.run(recipe, out=tmp_path / "taken")
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep me"
    first, second = slimkit.run(recipe), slimkit.run(recipe)
    assert first.run_dir != second.run_dir and first.run_dir.parent.name == "runs"


def test_inputs_are_left_untouched(blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path):
    before = blobs_npz.read_bytes()
    slimkit.run(
        slimkit.Recipe.from_dict(tiny_recipe(blobs_npz, steps=[{"finetune": {"epochs": 1}}])),
        out=tmp_path / "r",
    )
    assert blobs_npz.read_bytes() == before


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"source": "tiny_models:mlp"}, r"cannot run on data .*examples are inputs \(1, 8, 8\)"),
        (
            {"source": "tiny_models:tiny_cnn", "kwargs": {"num_classes": 7}},
            r"outputs \(7,\) per example, but data .* has 3 classes.*num_classes: 3",
        ),
        ({"source": "resnet-mini", "kwargs": {"in_channels": 3}}, r"cannot run on data"),
    ],
)
def test_model_data_mismatch_is_explained(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path, model, message
):
    recipe = slimkit.Recipe.from_dict(tiny_recipe(blobs_npz, model=model))
    with pytest.raises(ShapeMismatchError, match=message):
        slimkit.run(recipe, out=tmp_path / "r")


def test_steps_that_remove_compute_without_speed_say_so():
    from slimkit.evaluation import LatencyStats, Measurement
    from slimkit.pipeline import _note_regressions

    def m(name: str, macs: int, p50: float) -> Measurement:
        rec = Measurement(
            name,
            name,
            ModelState(torch.nn.Identity()),
            None,
            {"accuracy": 0.0},  # type: ignore[arg-type]
            1,
            1,
            macs,
            1,
        )
        rec.latency = LatencyStats(p50, p50, 1, 1)
        return rec

    records = [m("a", 1000, 1.0), m("b", 500, 0.99), m("c", 500, 2.0), m("d", 200, 0.5)]
    _note_regressions(records)
    assert records[1].notes == [
        "removed 50% of a's MACs but is not faster: p50 0.990 ms on eager vs 1.000 ms on eager"
    ]
    assert records[2].notes[0].startswith("slower than b: p50 2.000 ms")
    assert records[3].notes == []


def test_a_step_gives_the_same_model_whatever_ran_before_it(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path
):
    """A search's trial and the recipe that reproduces it reach a step with the global random
    generator in different states; the student a distill step builds must not depend on it."""
    student = {"model": {"source": "small-cnn", "kwargs": {"width": 4, "depth": 2, "grid": 2}}}
    steps = [{"distill": {"student": student, "epochs": 1, "batch_size": 16}}]
    recipe = slimkit.Recipe.from_dict(tiny_recipe(blobs_npz, steps=steps))
    session = Session.start(recipe)
    students = []
    for draws in (0, 5):
        torch.rand(draws)  # what earlier steps or trials drew
        ctx = session.context(tmp_path / f"after-{draws}", session.base.arch)
        students.append(session.apply(recipe.steps[0], session.baseline_state(), ctx).module)
    first, second = (s.state_dict() for s in students)
    assert all(torch.equal(first[k], second[k]) for k in first)
