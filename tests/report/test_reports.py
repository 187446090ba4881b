"""report.html renders in headless Chromium with its plots and tables; runs compare side by side."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from tests.helpers import tiny_recipe

import slimkit
from slimkit.report.plots import render_plots


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run for the module; a module fixture is set up before the per-test isolation
    (conftest.py), so it puts the fixtures on the import path itself, and only for the run."""
    import numpy as np
    from tests.helpers import FIXTURES, blobs

    root = tmp_path_factory.mktemp("report")
    x, y = blobs(300)
    np.savez(root / "blobs.npz", x=x, y=y)
    recipe = slimkit.Recipe.from_dict(tiny_recipe(root / "blobs.npz"))
    with pytest.MonkeyPatch.context() as m:
        m.syspath_prepend(str(FIXTURES))
        torch.set_num_threads(1)
        return slimkit.run(recipe, out=root / "run").run_dir


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "Chromium is needed to render the report: apt-get install chromium (make test does)"
        )
    return path


@pytest.mark.slow
def test_report_html_renders_its_plots_and_tables_in_chromium(run_dir: Path):
    page = run_dir / "report.html"
    dom = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rendered = re.findall(r'data-plot="([\w-]+)"><img[^>]*data-rendered="(\d+)x(\d+)"', dom)
    assert {name for name, _, _ in rendered} == {"latency", "size", "size-by-layer-type"}
    assert all(int(w) > 300 and int(h) > 200 for _, w, h in rendered)
    for step in ("baseline", "prune", "finetune", "quantize"):
        assert f"<td>{step}</td>" in dom
    assert "Environment" in dom and "x faster" in dom


def test_size_breakdown_reads_the_artifacts(run_dir: Path):
    import json

    steps = json.loads((run_dir / "results.json").read_text())["steps"]
    base, quant = steps[0], steps[-1]
    assert set(base["bytes_by_layer_type"]) == {"Conv2d", "BatchNorm2d", "Linear"}
    assert sum(base["bytes_by_layer_type"].values()) <= base["size_bytes"]
    # int8 weights on ONNX Runtime: the conv bytes shrink about 4x
    assert quant["bytes_by_layer_type"]["Conv2d"] < base["bytes_by_layer_type"]["Conv2d"] / 3


def test_report_command_rerenders_and_compares(run_dir: Path, cli, tmp_path: Path):
    (run_dir / "report.html").unlink()
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    result = cli("report", str(run_dir), str(other), "--out", str(tmp_path / "cmp.html"))
    assert result.code == 0, result.err
    assert (run_dir / "report.html").is_file()
    page = (tmp_path / "cmp.html").read_text()
    assert page.count("<td>tiny</td>") == 2 and "runs compared" in page
    again = cli("report", str(run_dir), str(other), "--out", str(tmp_path / "cmp.html"))
    assert again.code == 2 and "already exists" in again.err


def test_report_command_refuses_a_folder_that_is_not_a_run(cli, tmp_path: Path):
    result = cli("report", str(tmp_path))
    assert result.code == 2 and "not a slimkit run directory" in result.err


def test_plots_skip_what_a_run_does_not_have(run_dir: Path):
    import json

    results = json.loads((run_dir / "results.json").read_text())
    assert "pareto" not in render_plots(results) and "sensitivity" not in render_plots(results)
