"""The bad-input matrix: every entry point, fed broken input, answers in words and loses nothing.

Each case writes its inputs under ``inputs/`` and either runs the ``slimkit`` command (expect
exit status 2, the message on stderr, no traceback) or calls the Python API (expect the
documented exception type and message). After every case each input file is byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tests.helpers import blobs

from slimkit.data import DataSpec, load_data
from slimkit.errors import (
    DataLoadError,
    ModelLoadError,
    RecipeError,
    SlimkitError,
    UnsafeCheckpointError,
)
from slimkit.models import ModelSpec, build_model

Call = list[str] | Callable[[], object]


@dataclass(frozen=True)
class Bad:
    """One bad input: ``make(inputs_dir)`` writes it and returns CLI args or a Python call."""

    id: str
    make: Callable[[Path], Call]
    message: str  # regex the error must match
    error: type[Exception] = SlimkitError  # what the Python API raises


# --- builders ------------------------------------------------------------------------------


def _npz(d: Path, name: str = "d.npz", **arrays: np.ndarray) -> Path:
    path = d / name
    np.savez(path, **arrays)
    return path


def _good_npz(d: Path) -> Path:
    x, y = blobs(60)
    return _npz(d, "good.npz", x=x, y=y)


def _file(d: Path, name: str, data: bytes) -> Path:
    (d / name).write_bytes(data)
    return d / name


def _eval(data: str | Path, *extra: str) -> list[str]:
    return ["eval", "-m", "tiny_models:tiny_cnn", "-d", str(data), *extra]


def _load(source: str | Path, **spec: object) -> Callable[[], object]:
    return lambda: load_data(DataSpec.parse({"source": str(source), **spec}))


def _model(spec: dict[str, object], **hints: object) -> Callable[[], object]:
    return lambda: build_model(ModelSpec.parse(spec), **hints)


def _recipe(d: Path, text: str | bytes) -> list[str]:
    path = d / "recipe.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return ["run", str(path), "--out", str(d.parent / "run")]


def _recipe_dict(d: Path, **changes: object) -> list[str]:
    recipe: dict[str, object] = {
        "name": "bad",
        "model": "tiny_models:tiny_cnn",
        "data": f"npz:{_good_npz(d)}",
        "steps": [],
    }
    recipe.update(changes)
    return _recipe(d, yaml.safe_dump(recipe))


def _weights(d: Path, state: dict[str, torch.Tensor], name: str = "w.safetensors") -> Path:
    from safetensors.torch import save_file

    save_file(state, str(d / name))
    return d / name


def _tiny_state(**kwargs: int) -> dict[str, torch.Tensor]:
    net = build_model(ModelSpec.parse({"source": "tiny_models:tiny_cnn", "kwargs": kwargs}))
    return {k: v.clone() for k, v in net.state_dict().items()}


def _nan_state() -> dict[str, torch.Tensor]:
    state = _tiny_state()
    state["0.weight"][0, 0, 0, 0] = float("nan")
    return state


def _images(d: Path, sizes: list[tuple[int, int]], corrupt: bool = False) -> Path:
    from PIL import Image

    root = d / "images"
    for i, size in enumerate(sizes):
        folder = root / f"class{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("L", size, color=i * 20).save(folder / f"{i}.png")
    if corrupt:
        target = root / "class0" / "0.png"
        target.write_bytes(target.read_bytes()[:40])
    return root


def _export_over_existing(d: Path) -> list[str]:
    existing = _file(d, "model.onnx", b"the user's own file")
    return ["export", "-m", "tiny_models:tiny_cnn", "-d", str(_good_npz(d)), "-o", str(existing)]


def _run_into_nonempty(d: Path) -> list[str]:
    _file(d, "notes.txt", b"keep me")
    recipe = {"model": "tiny_models:tiny_cnn", "data": f"npz:{_good_npz(d)}"}
    path = d / "ok.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return ["run", str(path), "--out", str(d)]


def _alias_bomb(levels: int = 10, width: int = 9) -> str:
    """A few hundred bytes of YAML naming a tree of ``width**levels`` leaves."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + f"\nname: *a{levels}\nmodel: resnet-mini\ndata: mnist5k\n"


def _png_header(d: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels: a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    data += chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    folder = d / "images"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        (folder / name / "0.png").write_bytes(data)
    return folder


def _hf_dir(d: Path, weights: str) -> Path:
    """A Hugging Face BERT directory whose only weights are ``weights`` holding a pickle that
    names code (``pytorch_model.bin`` or a ``model.safetensors`` that is not one)."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    folder = d / "hf"
    BertModel(config).save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    payload = {"w": torch.zeros(1), "x": _Payload(d.parent / "code-ran")}
    torch.save(payload, folder / weights)
    return folder


def _saved_naming_code(d: Path) -> Path:
    """A safetensors file whose architecture record names a shell command as its factory."""
    from safetensors.torch import save_file

    arch = {"source": "subprocess:getoutput", "kwargs": {"cmd": f"touch {d.parent / 'code-ran'}"}}
    path = d / "model.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"slimkit.arch": json.dumps(arch)})
    return path


def _huge_header(d: Path) -> Path:
    good = _weights(d, _tiny_state())
    data = bytearray(good.read_bytes())
    data[:8] = (2**63 - 1).to_bytes(8, "little")
    return _file(d, "huge.safetensors", bytes(data))


def _step(**changes: object) -> dict[str, object]:
    """One step of a well-formed results.json, with ``changes``."""
    step: dict[str, object] = {
        "name": "baseline",
        "kind": "baseline",
        "accuracy": 90.0,
        "latency_ms": {"p50": 1.0, "p90": 1.2},
        "throughput": 1000.0,
        "batch_size": 1,
        "runtime": "eager",
        "params": 10,
        "nonzero_params": 10,
        "size_bytes": 100,
        "bytes_by_layer_type": {},
        "macs": 10,
        "artifact": "artifacts/00-baseline.safetensors",
        "metrics": {},
        "wall_s": 1.0,
        "notes": [],
    }
    return {**step, **changes}


def _results(d: Path, **changes: object) -> list[str]:
    step = _step()
    results: dict[str, object] = {
        "recipe": {"name": "r"},
        "steps": [step],
        "summary": {
            "baseline": "baseline",
            "final": "baseline",
            "speedup": 1.0,
            "compression": 1.0,
            "accuracy_drop": 0.0,
        },
        "environment": {
            "cpu": "x",
            "cpu_count": 2,
            "threads": 1,
            "python": "3",
            "platform": "p",
            "versions": {},
        },
    }
    results.update(changes)
    run = d / "run"
    run.mkdir()
    text = results.pop("raw") if "raw" in results else json.dumps(results)
    (run / "results.json").write_text(str(text))
    return ["report", str(run)]


def _foreign_search(d: Path) -> list[str]:
    run = d / "search-run"
    (run / "search").mkdir(parents=True)
    recipe = {"name": "s", "model": "tiny_models:tiny_cnn", "data": f"npz:{_good_npz(d)}"}
    saved = {"recipe": recipe, "config": {}, "storage": f"sqlite:///{d / 'elsewhere.db'}"}
    (run / "search" / "auto.yaml").write_text(yaml.safe_dump(saved))
    return ["auto", "--resume", str(run)]


# --- the matrix ----------------------------------------------------------------------------

CASES = [
    # data files, through the CLI
    Bad("npz-empty-file", lambda d: _eval(_file(d, "e.npz", b"")), "not a readable .npz"),
    Bad(
        "npz-truncated",
        lambda d: _eval(_file(d, "t.npz", _good_npz(d).read_bytes()[:300])),
        "not a readable .npz",
    ),
    Bad(
        "npz-corrupt-bytes",
        lambda d: _eval(_file(d, "c.npz", bytes(range(256)) * 64)),
        "not a readable .npz",
    ),
    Bad(
        "text-file-named-npz",
        lambda d: _eval(_file(d, "t.npz", b"x,y\n1,2\n")),
        "not a readable .npz",
    ),
    Bad(
        "npz-nan-inputs",
        lambda d: _eval(_npz(d, x=np.full((30, 1, 8, 8), np.nan, np.float32), y=np.arange(30) % 3)),
        "NaN or Inf",
    ),
    Bad(
        "npz-inf-inputs",
        lambda d: _eval(_npz(d, x=np.full((30, 1, 8, 8), np.inf, np.float32), y=np.arange(30) % 3)),
        "NaN or Inf",
    ),
    Bad(
        "npz-empty-dataset",
        lambda d: _eval(_npz(d, x=np.zeros((0, 1, 8, 8), np.float32), y=np.zeros(0, int))),
        "empty",
    ),
    Bad(
        "npz-negative-labels",
        lambda d: _eval(_npz(d, x=blobs(30)[0], y=np.arange(30) % 3 - 1)),
        "labels must be >= 0",
    ),
    Bad(
        "npz-fractional-labels",
        lambda d: _eval(_npz(d, x=blobs(30)[0], y=np.arange(30) % 3 + 0.5)),
        "whole class indices",
    ),
    Bad(
        "npz-label-out-of-range",
        lambda d: _eval(_npz(d, x=blobs(30)[0], y=np.r_[np.arange(29) % 3, 10**9])),
        "label 1000000000 is out of range",
    ),
    Bad(
        "npz-length-mismatch",
        lambda d: _eval(_npz(d, x=blobs(30)[0], y=np.arange(29) % 3)),
        "30 inputs but 29 labels",
    ),
    Bad(
        "npz-wrong-array-names",
        lambda d: _eval(_npz(d, images=blobs(30)[0], labels=np.arange(30) % 3)),
        "expected 'x' and 'y'",
    ),
    Bad(
        "npz-object-array",
        lambda d: _eval(_npz(d, x=np.array([{"a": 1}] * 30, dtype=object), y=np.arange(30) % 3)),
        "Python objects",
    ),
    Bad(
        "npz-string-inputs",
        lambda d: _eval(_npz(d, x=np.array(["a"] * 30), y=np.arange(30) % 3)),
        "inputs must be numeric",
    ),
    Bad(
        "npz-two-dim-labels",
        lambda d: _eval(_npz(d, x=blobs(30)[0], y=np.zeros((30, 2), int))),
        "1-D array",
    ),
    Bad(
        "npz-one-class",
        lambda d: _eval(_npz(d, x=blobs(30)[0], y=np.zeros(30, int))),
        "at least 2 classes",
    ),
    Bad(
        "npz-train-test-shapes-differ",
        lambda d: _eval(
            _npz(
                d,
                x_train=blobs(30)[0],
                y_train=np.arange(30) % 3,
                x_test=blobs(10, size=12)[0],
                y_test=np.arange(10) % 3,
            )
        ),
        "train inputs are",
    ),
    Bad("data-file-missing", lambda d: _eval(d / "nowhere.npz"), "does not exist"),
    Bad("data-unknown-name", lambda d: _eval("mnist6k"), "Unknown data set 'mnist6k'"),
    Bad("npz-is-a-directory", lambda d: _eval(f"npz:{d}"), "must be a file"),
    Bad(
        "imagefolder-no-classes",
        lambda d: _eval(f"imagefolder:{d}"),
        "no class folders",
    ),
    Bad(
        "imagefolder-corrupt-image",
        lambda d: _eval(f"imagefolder:{_images(d, [(8, 8)] * 4, corrupt=True)}"),
        "not a readable image",
    ),
    Bad(
        "imagefolder-mixed-sizes",
        lambda d: _eval(f"imagefolder:{_images(d, [(8, 8), (8, 8), (9, 8), (8, 8)])}"),
        "differ in size",
    ),
    # text tables, through the Python API
    Bad(
        "csv-not-utf8",
        lambda d: _load(_file(d, "t.csv", "text,label\ncaf\xe9,1\n".encode("latin-1"))),
        "not UTF-8",
        DataLoadError,
    ),
    Bad(
        "csv-missing-column",
        lambda d: _load(_file(d, "t.csv", b"body,label\nhello,1\n")),
        "has no column 'text'",
        DataLoadError,
    ),
    Bad("csv-empty", lambda d: _load(_file(d, "t.csv", b"")), "holds no rows", DataLoadError),
    Bad(
        "jsonl-bad-line",
        lambda d: _load(_file(d, "t.jsonl", b'{"text": "a", "label": 1}\n{"text": \n')),
        "line 2 is not valid JSON",
        DataLoadError,
    ),
    Bad(
        "data-fraction-out-of-range",
        lambda d: _load(_good_npz(d), test_fraction=1.5),
        "test_fraction",
        RecipeError,
    ),
    # models and weights
    Bad(
        "weights-empty-safetensors",
        lambda d: _eval(_good_npz(d), "-w", str(_file(d, "w.safetensors", b""))),
        "not a readable safetensors",
    ),
    Bad(
        "weights-truncated-safetensors",
        lambda d: _eval(
            _good_npz(d),
            "-w",
            str(_file(d, "t.safetensors", _weights(d, _tiny_state()).read_bytes()[:200])),
        ),
        "not a readable safetensors",
    ),
    Bad(
        "weights-garbage-checkpoint",
        lambda d: _eval(_good_npz(d), "-w", str(_file(d, "w.pt", b"\x00garbage" * 10))),
        "not a readable PyTorch checkpoint",
    ),
    Bad(
        "weights-wrong-shapes",
        lambda d: _model(
            {"source": "tiny_models:tiny_cnn", "weights": str(_weights(d, _tiny_state(width=8)))}
        ),
        "shape mismatch",
        ModelLoadError,
    ),
    Bad(
        "weights-nan",
        lambda d: _model(
            {"source": "tiny_models:tiny_cnn", "weights": str(_weights(d, _nan_state()))}
        ),
        r"NaN or Inf values \(0.weight\)",
        ModelLoadError,
    ),
    Bad(
        "weights-pickled-code",
        lambda d: _model(
            {
                "source": "tiny_models:tiny_cnn",
                "weights": str(_pickled(d)),
            }
        ),
        "--trust-checkpoint",
        UnsafeCheckpointError,
    ),
    Bad(
        "model-unknown-name",
        lambda d: ["eval", "-m", "resnet-maxi", "-d", str(_good_npz(d))],
        "Did you mean 'resnet-mini'",
    ),
    Bad(
        "model-module-missing",
        lambda d: ["eval", "-m", "no_such_pkg:net", "-d", str(_good_npz(d))],
        "Cannot import 'no_such_pkg'",
    ),
    Bad(
        "model-attribute-not-callable",
        lambda d: ["eval", "-m", "tiny_models:not_a_factory", "-d", str(_good_npz(d))],
        "no callable 'not_a_factory'",
    ),
    Bad(
        "model-bad-kwargs",
        lambda d: _model({"source": "tiny_models:tiny_cnn", "kwargs": {"depth": 3}}),
        "Cannot build model",
        ModelLoadError,
    ),
    Bad(
        "model-plain-safetensors-as-source",
        lambda d: _model({"source": str(_weights(d, _tiny_state()))}),
        "no architecture",
        ModelLoadError,
    ),
    Bad(
        "model-hf-dir-without-config",
        lambda d: _model({"source": f"hf:{d}"}),
        "no config.json",
        ModelLoadError,
    ),
    Bad(
        "model-data-shape-mismatch",
        lambda d: ["eval", "-m", "tiny_models:mlp", "-d", str(_good_npz(d))],
        "cannot run on data",
    ),
    Bad(
        "model-class-count-mismatch",
        lambda d: _recipe_dict(
            d, model={"source": "tiny_models:tiny_cnn", "kwargs": {"num_classes": 5}}
        ),
        "outputs \\(5,\\) per example, but data .* has 3 classes",
    ),
    # recipes
    Bad("recipe-not-utf8", lambda d: _recipe(d, b"name: caf\xe9\n"), "not UTF-8"),
    Bad("recipe-invalid-yaml", lambda d: _recipe(d, "model: [unclosed\n"), "not valid YAML"),
    Bad("recipe-empty-file", lambda d: _recipe(d, ""), "must be a mapping"),
    Bad("recipe-top-level-list", lambda d: _recipe(d, "- prune: {}\n"), "must be a mapping"),
    Bad(
        "recipe-python-tag",
        lambda d: _recipe(d, "model: !!python/object/apply:os.system ['touch pwned']\n"),
        "not valid YAML",
    ),
    Bad(
        "recipe-unknown-key",
        lambda d: _recipe_dict(d, epochs=3),
        "unknown key 'recipe.yaml.epochs'",
    ),
    Bad(
        "recipe-unknown-step",
        lambda d: _recipe_dict(d, steps=[{"shrink": {}}]),
        "Unknown step type 'shrink'",
    ),
    Bad(
        "recipe-ratio-out-of-range",
        lambda d: _recipe_dict(d, steps=[{"prune": {"method": "channels", "ratio": 1.5}}]),
        "ratio",
    ),
    Bad(
        "recipe-negative-epochs",
        lambda d: _recipe_dict(d, baseline={"train": {"epochs": -1}}),
        "epochs",
    ),
    Bad(
        "recipe-nan-learning-rate",
        lambda d: _recipe(
            d, "model: tiny_models:tiny_cnn\ndata: mnist5k\nbaseline:\n  train: {lr: .nan}\n"
        ),
        "lr",
    ),
    Bad(
        "recipe-huge-batch",
        lambda d: _recipe_dict(d, evaluation={"batch_size": 10**12}),
        "batch_size",
    ),
    Bad(
        "recipe-name-with-path",
        lambda d: _recipe_dict(d, name="../../etc"),
        "name",
    ),
    Bad(
        "recipe-step-after-quantize",
        lambda d: _recipe_dict(d, steps=[{"quantize": {"mode": "fp16"}}, {"finetune": {}}]),
        "Put quantize last",
    ),
    Bad("recipe-missing-file", lambda d: ["run", str(d / "nope.yaml")], "does not exist"),
    Bad("recipe-yaml-alias-bomb", lambda d: _recipe(d, _alias_bomb()), "expands to more than"),
    Bad("recipe-recursive-alias", lambda d: _recipe(d, "name: &a [*a]\n"), "includes itself"),
    Bad("recipe-nested-too-deeply", lambda d: _recipe(d, "[" * 100_000), "nests its values"),
    Bad(
        "recipe-larger-than-any-recipe",
        lambda d: _recipe(d, "name: x\n" + "# padding\n" * 500_000),
        "larger than 4 MiB",
    ),
    Bad(
        "recipe-megabyte-value-quoted-short",
        lambda d: _recipe_dict(d, name="x" * 1_000_000),
        r"got 'xxxx.*\.\.\.",
    ),
    # files handed over: models, data, run directories
    Bad(
        "model-hf-dir-pickled-bin",
        lambda d: _model({"source": f"hf:{_hf_dir(d, 'pytorch_model.bin')}"}),
        "pickled checkpoint",
        UnsafeCheckpointError,
    ),
    Bad(
        "model-hf-dir-safetensors-is-a-pickle",
        lambda d: _model({"source": f"hf:{_hf_dir(d, 'model.safetensors')}"}),
        "not a readable safetensors",
        ModelLoadError,
    ),
    Bad(
        "model-saved-file-names-a-shell-command",
        lambda d: ["eval", "-m", str(_saved_naming_code(d)), "-d", str(_good_npz(d))],
        "was not saved by slimkit on this machine",
    ),
    Bad(
        "weights-header-length-overflow",
        lambda d: _eval(_good_npz(d), "-w", str(_huge_header(d))),
        "not a readable safetensors",
    ),
    Bad(
        "imagefolder-decompression-bomb",
        lambda d: _eval(f"imagefolder:{_png_header(d, 30_000, 30_000)}"),
        "too large to be a training image",
    ),
    Bad(
        "jsonl-nested-too-deeply",
        lambda d: _load(_file(d, "t.jsonl", b'{"text": ' + b"[" * 200_000 + b"\n")),
        "nests its values too deeply",
        DataLoadError,
    ),
    Bad("report-results-summary-null", lambda d: _results(d, summary=None), "summary"),
    Bad("report-results-steps-wrong-type", lambda d: _results(d, steps="all"), "steps"),
    Bad(
        "report-results-latency-nan",
        lambda d: _results(d, steps=[_step(latency_ms={"p50": float("nan"), "p90": 1.0})]),
        "latency_ms.p50': Input should be a finite number",
    ),
    Bad(
        "report-results-nested-too-deeply",
        lambda d: _results(d, raw="[" * 200_000),
        "nests its values too deeply",
    ),
    Bad("auto-resume-foreign-storage", _foreign_search, "names the study storage"),
    # command-line values and run directories
    Bad("cli-batch-zero", lambda d: _eval(_good_npz(d), "-b", "0"), "Invalid value"),
    Bad("cli-batch-huge", lambda d: _eval(_good_npz(d), "-b", str(10**9)), "Invalid value"),
    Bad(
        "cli-ratios-not-numbers",
        lambda d: [
            "sensitivity",
            "-m",
            "tiny_models:tiny_cnn",
            "-d",
            str(_good_npz(d)),
            "--ratios",
            "a,b",
        ],
        "not a comma-separated list",
    ),
    Bad("cli-export-over-existing-file", _export_over_existing, "already exists"),
    Bad("cli-run-into-nonempty-dir", _run_into_nonempty, "not empty"),
    Bad(
        "cli-auto-unknown-objective",
        lambda d: [
            "auto",
            "-m",
            "tiny_models:tiny_cnn",
            "-d",
            str(_good_npz(d)),
            "--objective",
            "joy",
        ],
        "objective",
    ),
    Bad("cli-report-not-a-run", lambda d: ["report", str(d)], "results.json"),
    Bad(
        "cli-resume-not-a-run", lambda d: ["run", "--resume", str(d)], "not a slimkit run directory"
    ),
]


class _Payload:
    """Unpickling it calls ``Path.touch(marker)``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _pickled(d: Path) -> Path:
    path = d / "evil.pt"
    torch.save({"state_dict": _tiny_state(), "x": _Payload(d.parent / "code-ran")}, path)
    return path


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_the_matrix_is_large_and_its_names_unique():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_answered_in_words_and_inputs_are_untouched(
    case: Bad, tmp_path: Path, fixtures_on_path: Path, cli
):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    call = case.make(inputs)
    before = _digests(inputs)
    if isinstance(call, list):
        out = cli(*call)
        assert out.code == 2, (out.code, out.out, out.err)
        assert "Traceback" not in out.out + out.err
        assert re.search(case.message, " ".join(out.err.split())), out.err
        assert len(out.err) < 3000, "messages quote a bounded share of any user value"
    else:
        with pytest.raises(case.error, match=case.message):
            call()
    assert _digests(inputs) == before
    assert not (tmp_path / "code-ran").exists()


def test_the_report_cases_differ_from_a_results_file_that_renders(tmp_path: Path, cli):
    out = cli(*_results(tmp_path))
    assert out.code == 0, out.err
    assert (tmp_path / "run" / "report.html").is_file()


def test_a_cache_that_is_a_file_is_refused_before_any_training(
    blobs_npz: Path, fixtures_on_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
):
    from tests.helpers import tiny_recipe

    cache = tmp_path / "cache-file"
    cache.write_text("not a folder")
    monkeypatch.setenv("SLIMKIT_CACHE", str(cache))
    trained: list[object] = []
    monkeypatch.setattr("slimkit.baseline.train", lambda *a, **k: trained.append(a))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(blobs_npz)))
    out = cli("run", str(recipe), "--out", str(tmp_path / "run"))
    assert out.code == 2 and "Traceback" not in out.err
    assert "cache folder" in out.err and "SLIMKIT_CACHE" in out.err
    assert trained == []  # refused before the baseline's training, not after it
    assert cache.read_text() == "not a folder"


def test_a_full_disk_is_answered_in_words_and_leaves_no_partial_file(
    blobs_npz: Path, tmp_path: Path
):
    """The OS refuses writes past 1 KiB (RLIMIT_FSIZE), as a full disk would."""
    import os
    import resource
    import signal
    import subprocess
    import sys

    from tests.helpers import FIXTURES

    def limit_writes() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY))

    out = tmp_path / "model.safetensors"
    args = ["export", "-m", "tiny_models:tiny_cnn", "-d", str(blobs_npz), "--format"]
    proc = subprocess.run(
        [sys.executable, "-m", "slimkit", *args, "safetensors", "-o", str(out)],
        preexec_fn=limit_writes,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(FIXTURES)},
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"Cannot write {out}" in " ".join(proc.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs.npz", "cache"]
