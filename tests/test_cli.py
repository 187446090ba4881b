"""The CLI: the acceptance cases, errors as one paragraph with exit status 2, no traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.helpers import tiny_recipe


def _write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def _one_paragraph_error(result, *fragments: str) -> None:
    assert result.code == 2, result
    assert "Traceback" not in result.err + result.out
    text = result.err.strip()
    assert text.startswith("error:") and "\n\n" not in text
    flat = " ".join(text.split())
    for fragment in fragments:
        assert fragment in flat, (fragment, flat)


@pytest.mark.slow
def test_run_with_user_npz_and_import_path_model(
    cli, blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path
):
    recipe = _write(tmp_path / "r.yaml", tiny_recipe(blobs_npz))
    result = cli("run", str(recipe), "--out", str(tmp_path / "run"))
    assert result.code == 0, result.err
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [s["kind"] for s in results["steps"]] == ["baseline", "prune", "finetune", "quantize"]
    assert "quantize" in result.out and "x faster" in result.out and "run" in result.out


def test_wrong_recipe_key(cli, blobs_npz: Path, tmp_path: Path):
    recipe = tiny_recipe(blobs_npz)
    recipe["steps"][0]["prune"]["sparsty"] = 0.5
    result = cli("run", str(_write(tmp_path / "r.yaml", recipe)))
    _one_paragraph_error(
        result, "unknown key 'r.yaml.steps[0].prune.sparsty'", "allowed keys here:", "sparsity"
    )


def test_missing_recipe_and_missing_data_file(cli, tmp_path: Path, fixtures_on_path: Path):
    _one_paragraph_error(cli("run", str(tmp_path / "nope.yaml")), "nope.yaml", "does not exist")
    recipe = _write(
        tmp_path / "r.yaml",
        {"model": "resnet-mini", "data": "npz:missing.npz", "steps": [{"finetune": {}}]},
    )
    _one_paragraph_error(cli("run", str(recipe)), "'missing.npz' does not exist")
    assert not (tmp_path / "runs").exists() or all(
        not (d / "results.json").exists() for d in (tmp_path / "runs").iterdir()
    )


def test_model_data_shape_mismatch(cli, blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path):
    recipe = _write(tmp_path / "r.yaml", tiny_recipe(blobs_npz, model="tiny_models:mlp"))
    _one_paragraph_error(
        cli("run", str(recipe)), "Model 'tiny_models:mlp' cannot run on data", "inputs (1, 8, 8)"
    )


def test_list_shows_registries_and_forms(cli):
    result = cli("list")
    assert result.code == 0
    for name in (
        "resnet-mini",
        "small-cnn",
        "minilm-l6",
        "mnist5k",
        "bbc-news",
        "prune",
        "finetune",
        "quantize",
        "static-int8",
        "onnxruntime",
        "npz:path/to/data.npz",
        "package.module:factory",
    ):
        assert name in result.out, name


def test_every_listing_a_message_points_at_exists(cli):
    """`slimkit list steps` pointed at `slimkit list pruning`, which was refused."""
    pruning = cli("list", "pruning")
    assert pruning.code == 0
    assert all(m in pruning.out for m in ("magnitude", "n:m", "channels", "heads", "vocab"))
    quantization = cli("list", "quantization")
    assert quantization.code == 0 and "static-int8" in quantization.out
    steps = cli("list", "steps")
    assert "slimkit list pruning" in " ".join(steps.out.split()) and "magnitude" not in steps.out


def test_eval_bench_and_export(cli, blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path):
    model, data = "tiny_models:tiny_cnn", str(blobs_npz)
    result = cli("eval", "--model", model, "--data", data)
    assert result.code == 0 and "accuracy" in result.out and "macs" in result.out
    result = cli("bench", "--model", model, "--data", data, "--rounds", "2")
    assert result.code == 0
    assert all(runtime in result.out for runtime in ("eager", "onnxruntime", "openvino"))
    out = tmp_path / "m.onnx"
    assert cli("export", "--model", model, "--data", data, "--out", str(out)).code == 0
    assert out.stat().st_size > 0
    before = out.read_bytes()
    _one_paragraph_error(
        cli("export", "--model", model, "--data", data, "--out", str(out)),
        "already exists; slimkit never overwrites",
    )
    assert out.read_bytes() == before
    st = tmp_path / "m.safetensors"
    assert (
        cli(
            "export", "--model", model, "--data", data, "--out", str(st), "--format", "safetensors"
        ).code
        == 0
    )
    assert cli("eval", "--model", str(st), "--data", data).code == 0
    graph = cli("bench", "--model", str(out), "--data", data, "--rounds", "2")
    assert graph.code == 0 and "openvino" in graph.out and "eager" not in graph.out


def test_unknown_option_is_a_usage_error(cli):
    result = cli("run", "--frobnicate")
    assert result.code == 2 and "Traceback" not in result.err


@pytest.mark.slow
def test_console_script_runs_as_installed(tmp_path: Path):
    exe = Path(sys.executable).with_name("slimkit")
    proc = subprocess.run([str(exe), "list", "models"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "resnet-mini" in proc.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: resnet-mini\ndata: mnist5k\nbogus: 1\n")
    proc = subprocess.run([str(exe), "run", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "unknown key" in proc.stderr


@pytest.mark.slow
def test_progress_reaches_a_log_file_as_it_happens(blobs_npz: Path, tmp_path: Path):
    """Piped into a log, a run printed nothing for over ten minutes of training."""
    import os
    import signal

    from tests.helpers import FIXTURES, tiny_recipe

    recipe = tiny_recipe(blobs_npz)
    recipe["baseline"]["cache"] = False
    recipe["steps"][1]["finetune"]["epochs"] = 200  # still training when the lines are read
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = subprocess.Popen(
        [sys.executable, "-m", "slimkit", "run", str(path), "--out", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(FIXTURES), "OMP_NUM_THREADS": "1"},
    )
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.rstrip())
            if "finetune" in line and any("epoch 2/200 loss" in seen for seen in lines):
                break
        assert proc.poll() is None, "lines arrived only when the run ended"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    text = "\n".join(lines)
    assert "training baseline" in text and "epoch 4/4 loss" in text and " val " in text
    assert re.search(r"^\[\s*\d+\.\ds\] step 1/3: prune \(prune\)$", text, flags=re.M), text
    assert re.search(r"step 1/3: prune.*: done in \d+\.\ds", text), text


CLIENT = """
import json, sys
import numpy as np
import onnxruntime as ort
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
rows = np.load(sys.argv[2], allow_pickle=False)
feed = {i.name: rows[i.name] for i in session.get_inputs()}
logits = session.run(None, feed)[0]
print(json.dumps({"accuracy": float((logits.argmax(1) == rows["label"]).mean() * 100)}))
"""


@pytest.mark.slow
def test_a_client_without_slimkit_scores_the_rows_the_run_scored(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path, cli
):
    """A run recorded val_fraction, test_fraction and seed, not the rows: a user's own client
    could not score what slimkit scored."""
    import numpy as np
    from tests.helpers import tiny_recipe

    import slimkit

    result = slimkit.run(slimkit.Recipe.from_dict(tiny_recipe(blobs_npz)), out=tmp_path / "run")
    split = np.load(tmp_path / "run" / "split.npz", allow_pickle=False)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (209, 31, 60)
    every = np.concatenate([split["train"], split["val"], split["test"]])
    assert sorted(every.tolist()) == list(range(300))  # a partition of the source's rows

    rows = tmp_path / "test.npz"
    out = cli("export", "--run", str(tmp_path / "run"), "--format", "npz", "--out", str(rows))
    assert out.code == 0, out.err
    source = np.load(blobs_npz)
    exported = np.load(rows, allow_pickle=False)
    assert np.array_equal(exported["inputs"], source["x"][split["test"]])
    assert np.array_equal(exported["label"], source["y"][split["test"]])

    quantized = result.results["steps"][-1]
    client = subprocess.run(
        [sys.executable, "-c", CLIENT, str(tmp_path / "run" / quantized["artifact"]), str(rows)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert client.returncode == 0, client.stderr
    assert json.loads(client.stdout)["accuracy"] == pytest.approx(quantized["accuracy"], abs=1e-3)

    lines = tmp_path / "test.jsonl"
    args = ["export", "-d", str(blobs_npz), "--format", "jsonl", "--out", str(lines)]
    assert cli(*args).code == 0
    first = json.loads(lines.read_text().splitlines()[0])
    assert len(lines.read_text().splitlines()) == 60 and set(first) == {"inputs", "label"}


def test_data_and_model_options_take_the_recipe_mapping_form(cli, blobs_npz: Path):
    data = f"{{source: 'npz:{blobs_npz}', test_fraction: 0.5}}"
    done = cli("eval", "--model", "{source: small-cnn, kwargs: {width: 4}}", "--data", data)
    assert done.code == 0, done.err
    bad = cli("eval", "--model", "small-cnn", "--data", "{source: [unclosed")
    assert bad.code == 2 and "--data is not valid YAML" in bad.err
    typo = cli("eval", "--model", "small-cnn", "--data", "{source: mnist5k, max_lenght: 8}")
    assert typo.code == 2 and "unknown key '--data.max_lenght'" in typo.err
