"""A run directory is a file someone hands over: ``--resume`` runs no code it names.

Every case starts from a real interrupted run (its steps kept, its timing not done), edits it as
an attacker or a torn copy would, and resumes it through the ``slimkit`` command. A payload
that would create a marker file stands behind every code path; the marker must never appear,
a refusal is exit status 2 in words, and the user's files are left byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from tests.helpers import tiny_recipe

import slimkit
from slimkit.errors import RunDirError, RunInterrupted
from slimkit.resume import content_sha256
from slimkit.rundir import create_run_dir

COMPARED = ("name", "accuracy", "params", "nonzero_params", "size_bytes", "macs", "runtime")
FIXTURES = Path(__file__).parent / "fixtures"
KEY = "run-key"


@dataclass(frozen=True)
class Interrupted:
    """A run stopped after its steps were kept, the key that signed it, and the figures the
    same recipe gives uninterrupted."""

    run_dir: Path
    key: Path
    reference: list[dict]
    finished: Path  # the uninterrupted run's directory


def _figures(results: dict) -> list[dict]:
    return [{k: s[k] for k in COMPARED} for s in results["steps"]]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interrupted]:
    root = tmp_path_factory.mktemp("interrupted")
    import numpy as np
    from tests.helpers import blobs

    x, y = blobs(300)
    np.savez(root / "blobs.npz", x=x, y=y)
    recipe = tiny_recipe(
        root / "blobs.npz",
        steps=[
            {"prune": {"method": "magnitude", "sparsity": 0.5}},
            {"quantize": {"mode": "static-int8", "calibration_samples": 32}},
        ],
    )
    recipe["baseline"]["cache"] = False

    def stop(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as m:
        m.setenv("SLIMKIT_CACHE", str(root / "cache"))
        m.syspath_prepend(str(FIXTURES))
        m.chdir(root)
        torch.set_num_threads(1)
        reference = slimkit.run(slimkit.Recipe.from_dict(recipe), out=root / "reference")
        m.setattr("slimkit.pipeline.Session.time", stop)
        with pytest.raises(RunInterrupted):
            slimkit.run(slimkit.Recipe.from_dict(recipe), out=root / "run")
    yield Interrupted(
        root / "run", root / "cache" / KEY, _figures(reference.results), root / "reference"
    )


@pytest.fixture
def run_dir(interrupted: Interrupted, tmp_path: Path, fixtures_on_path: Path) -> Path:
    """A copy of the interrupted run, resumable on this machine (its key in this test's cache)."""
    target = tmp_path / "run"
    shutil.copytree(interrupted.run_dir, target)
    (tmp_path / "cache").mkdir(exist_ok=True)
    shutil.copyfile(interrupted.key, tmp_path / "cache" / KEY)
    return target


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _payload_factory(path: Path, marker: Path) -> Path:
    path.write_text(
        "import pathlib\n\n\ndef make(**kwargs):\n"
        f"    pathlib.Path({str(marker)!r}).touch()\n"
        "    raise ValueError('the payload ran')\n"
    )
    return path


class _Payload:
    """Unpickling it calls ``Path.touch(marker)``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _record(run_dir: Path, step: str = "01-prune") -> tuple[Path, dict]:
    path = run_dir / "checkpoints" / step / "step.json"
    return path, json.loads(path.read_text())


def _point_model_at(run_dir: Path, rel: str, step: str = "01-prune") -> None:
    """Make ``step.json`` name ``rel`` as the kept model, with its hash updated to match."""
    path, record = _record(run_dir, step)
    record["sha256"] = {rel: content_sha256(run_dir / rel) if (run_dir / rel).is_file() else ""}
    record["model"] = rel
    path.write_text(json.dumps(record))


def _resume_refused(cli, run_dir: Path, message: str, *extra: str) -> None:
    before = _digests(run_dir)
    out = cli("run", "--resume", str(run_dir), *extra)
    assert out.code == 2, (out.code, out.out, out.err)
    assert "Traceback" not in out.out + out.err
    assert message in " ".join(out.err.split()), out.err
    assert _digests(run_dir) == before


def _resumes_to_reference(cli, run_dir: Path, interrupted: Interrupted, *extra: str) -> dict:
    out = cli("run", "--resume", str(run_dir), *extra)
    assert out.code == 0, out.err
    results = json.loads((run_dir / "results.json").read_text())
    assert _figures(results) == interrupted.reference
    return results


# --- the untouched copy resumes -------------------------------------------------------------


def test_an_untouched_copy_resumes_to_the_uninterrupted_figures(run_dir: Path, interrupted, cli):
    results = _resumes_to_reference(cli, run_dir, interrupted)
    assert results["resumed"] == {"reused_steps": ["prune", "quantize"]}


# --- code through step.json and kept files ---------------------------------------------------


def test_a_step_json_naming_a_pt2_program_is_refused_unread(run_dir: Path, tmp_path: Path, cli):
    evil = run_dir / "checkpoints" / "01-prune" / "model.pt2"
    torch.save({"x": _Payload(tmp_path / "code-ran")}, evil)
    _point_model_at(run_dir, "checkpoints/01-prune/model.pt2")
    _resume_refused(cli, run_dir, "was not written by a run")
    assert not (tmp_path / "code-ran").exists()


def test_a_step_json_naming_a_pt2_artifact_is_refused_unread(run_dir: Path, tmp_path: Path, cli):
    evil = run_dir / "artifacts" / "02-quantize.pt2"
    torch.save({"x": _Payload(tmp_path / "code-ran")}, evil)
    path, record = _record(run_dir, "02-quantize")
    record["artifact"] = "artifacts/02-quantize.pt2"
    record["sha256"] = {record["model"]: record["sha256"][record["model"]]}
    record["sha256"]["artifacts/02-quantize.pt2"] = content_sha256(evil)
    path.write_text(json.dumps(record))
    _resume_refused(cli, run_dir, "was not written by a run")
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_a_step_json_naming_a_factory_is_refused_not_imported(
    where: str, run_dir: Path, tmp_path: Path, cli
):
    folder = run_dir / "checkpoints" / "01-prune" if where == "inside" else tmp_path
    evil = _payload_factory(folder / "evil.py", tmp_path / "code-ran")
    ref = f"{evil.relative_to(run_dir) if where == 'inside' else evil}:make"
    path, record = _record(run_dir)
    record["model"] = ref
    record["sha256"] = {ref: hashlib.sha256(evil.read_bytes()).hexdigest()}
    path.write_text(json.dumps(record))
    _resume_refused(cli, run_dir, "was not written by a run")
    assert not (tmp_path / "code-ran").exists()


def test_a_kept_model_whose_manifest_names_a_factory_is_refused(run_dir: Path, tmp_path: Path, cli):
    evil = _payload_factory(run_dir / "checkpoints" / "01-prune" / "evil.py", tmp_path / "code-ran")
    kept = run_dir / "checkpoints" / "01-prune" / "model.safetensors"
    arch = json.dumps({"source": f"{evil}:make", "kwargs": {}})
    save_file({"w": torch.zeros(1)}, str(kept), metadata={"slimkit.arch": arch})
    path, record = _record(run_dir)
    record["sha256"] = {record["model"]: content_sha256(kept)}
    path.write_text(json.dumps(record))
    _resume_refused(cli, run_dir, "which the run's recipe does not name")
    assert not (tmp_path / "code-ran").exists()


# --- code through the saved recipe -----------------------------------------------------------


def _edit_recipe(run_dir: Path, **changes: object) -> None:
    path = run_dir / "recipe.yaml"
    recipe = yaml.safe_load(path.read_text())
    recipe.update(changes)
    path.write_text(yaml.safe_dump(recipe))


def test_a_recipe_edited_to_name_other_code_runs_it_only_with_the_opt_in(
    run_dir: Path, tmp_path: Path, cli
):
    evil = _payload_factory(run_dir / "checkpoints" / "evil.py", tmp_path / "code-ran")
    _edit_recipe(run_dir, model={"source": f"{evil}:make"})
    _resume_refused(cli, run_dir, "does not vouch for it")
    assert not (tmp_path / "code-ran").exists()
    # The opt-in is the user's word that they trust the directory: then the code does run.
    out = cli("run", "--resume", str(run_dir), "--trust-checkpoint")
    assert out.code == 2 and "the payload ran" in out.err
    assert (tmp_path / "code-ran").exists()


def test_a_recipe_edited_to_name_a_stdlib_callable_is_refused(run_dir: Path, tmp_path: Path, cli):
    marker = tmp_path / "code-ran"
    _edit_recipe(
        run_dir, model={"source": "subprocess:getoutput", "kwargs": {"cmd": f"touch {marker}"}}
    )
    _resume_refused(cli, run_dir, "does not vouch for it")
    assert not marker.exists()


def test_an_opt_in_written_into_the_recipe_is_not_the_users(run_dir: Path, tmp_path: Path, cli):
    evil = tmp_path / "evil.pt"
    torch.save({"x": _Payload(tmp_path / "code-ran")}, evil)
    path = run_dir / "recipe.yaml"
    recipe = yaml.safe_load(path.read_text())
    recipe["model"].update({"weights": str(evil), "trust_checkpoint": True})
    path.write_text(yaml.safe_dump(recipe))
    _resume_refused(cli, run_dir, "--trust-checkpoint")
    assert not (tmp_path / "code-ran").exists()


def test_a_run_signed_on_another_machine_needs_the_opt_in(
    run_dir: Path, interrupted: Interrupted, tmp_path: Path, cli
):
    (tmp_path / "cache" / KEY).write_bytes(os.urandom(32))  # this machine's key differs
    _resume_refused(cli, run_dir, "does not vouch for it")
    _resumes_to_reference(cli, run_dir, interrupted, "--trust-checkpoint")


def test_a_factory_file_changed_since_the_run_is_not_imported(
    run_dir: Path, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
):
    own = tmp_path / "tiny_models.py"
    own.write_text((FIXTURES / "tiny_models.py").read_text() + "\n# edited since\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "tiny_models", raising=False)
    _resume_refused(cli, run_dir, "the file changed since")


# --- files slimkit never writes ---------------------------------------------------------------


def test_a_symlink_in_the_run_dir_is_refused(run_dir: Path, tmp_path: Path, cli):
    secret = tmp_path / "secret.txt"
    secret.write_text("the user's own file")
    kept = run_dir / "checkpoints" / "01-prune" / "model.safetensors"
    kept.unlink()
    kept.symlink_to(secret)
    _resume_refused(cli, run_dir, "is a symbolic link")
    assert secret.read_text() == "the user's own file"


def test_a_fifo_in_the_run_dir_is_refused_without_hanging(run_dir: Path, cli):
    os.mkfifo(run_dir / "checkpoints" / "01-prune" / "pipe")
    _resume_refused(cli, run_dir, "is a special file")


# --- damaged bytes: recomputed, not trusted ---------------------------------------------------


def test_a_kept_model_with_a_huge_header_length_is_recomputed(run_dir: Path, interrupted, cli):
    kept = run_dir / "checkpoints" / "01-prune" / "model.safetensors"
    data = bytearray(kept.read_bytes())
    data[:8] = (2**63 - 1).to_bytes(8, "little")
    kept.write_bytes(bytes(data))
    results = _resumes_to_reference(cli, run_dir, interrupted)
    assert results["resumed"] == {"reused_steps": ["quantize"]}


def test_a_damaged_epoch_checkpoint_is_refused_in_words(run_dir: Path, cli):
    folder = run_dir / "checkpoints" / "00-baseline"
    _, record = _record(run_dir, "00-baseline")
    (folder / "step.json").unlink()  # the baseline did not finish: its epoch checkpoint is read
    train = folder / f"train-{record['key'][:16]}"
    train.mkdir()
    torch.save({"epoch": "three"}, train / "last.ckpt")
    _resume_refused(cli, run_dir, "Cannot resume from")


# --- interrupted at the edges -------------------------------------------------------------------


def test_a_run_killed_between_its_two_reports_is_finished_by_resume(
    run_dir: Path, interrupted, cli
):
    _resumes_to_reference(cli, run_dir, interrupted)
    (run_dir / "report.html").unlink()
    out = cli("run", "--resume", str(run_dir))
    assert out.code == 0, out.err
    assert (run_dir / "report.html").is_file()
    out = cli("run", "--resume", str(run_dir))
    assert out.code == 2 and "already finished" in out.err


def test_resume_clears_a_killed_quantize_steps_candidates(run_dir: Path, interrupted, cli):
    scratch = run_dir / "artifacts" / ".candidates-x1y2"
    scratch.mkdir()
    (scratch / "first-served.onnx").write_bytes(b"left by a kill -9")
    _resumes_to_reference(cli, run_dir, interrupted)
    assert not scratch.exists()


def test_two_runs_started_together_never_share_a_directory(tmp_path: Path):
    out = tmp_path / "shared"
    barrier = threading.Barrier(8)
    claimed: list[Path] = []
    refused: list[RunDirError] = []

    def start() -> None:
        barrier.wait()
        try:
            claimed.append(create_run_dir("x", out))
        except RunDirError as err:
            refused.append(err)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 1 and len(refused) == 7

    named: list[Path] = []
    barrier = threading.Barrier(8)

    def generated() -> None:
        barrier.wait()
        named.append(create_run_dir("same"))

    threads = [threading.Thread(target=generated) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(named)) == 8


# --- mutation: every edit resumes to the same figures or is refused ----------------------------

_TARGETS = [
    "checkpoints/00-baseline/step.json",
    "checkpoints/01-prune/step.json",
    "checkpoints/02-quantize/step.json",
    "checkpoints/01-prune/model.safetensors",
    "checkpoints/02-quantize/model.safetensors",
    "artifacts/02-quantize.onnx",
    "recipe.yaml",
    "results.json",
]
_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["../../etc/passwd", "/etc/passwd", "checkpoints/01-prune/evil.py:make"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
)


@st.composite
def _mutations(draw: st.DrawFn) -> tuple[str, str, object]:
    target = draw(st.sampled_from(_TARGETS))
    kind = draw(st.sampled_from(["flip", "truncate", "value"]))
    if kind == "flip":
        return target, kind, (draw(st.integers(0, 10**6)), draw(st.integers(1, 255)))
    if kind == "truncate":
        return target, kind, draw(st.floats(0, 1))
    field = draw(st.sampled_from(["key", "model", "artifact", "notes", "wall_s", "sha256", "*"]))
    return target, kind, (field, draw(_JSON_VALUES))


def _mutate(run_dir: Path, target: str, kind: str, arg: object) -> None:
    path = run_dir / target
    data = path.read_bytes() if path.exists() else b"{}"
    if kind == "flip":
        at, bits = arg  # type: ignore[misc]
        if data:
            buf = bytearray(data)
            buf[at % len(buf)] ^= bits
            data = bytes(buf)
    elif kind == "truncate":
        data = data[: int(len(data) * arg)]  # type: ignore[operator]
    else:
        field, value = arg  # type: ignore[misc]
        try:
            doc = json.loads(data) if target.endswith(".json") else yaml.safe_load(data)
        except (ValueError, yaml.YAMLError):
            doc = {}
        doc = value if field == "*" or not isinstance(doc, dict) else {**doc, field: value}
        data = json.dumps(doc).encode()
    path.write_bytes(data)


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(mutation=_mutations())
def test_every_mutation_resumes_to_the_same_figures_or_is_refused(
    mutation: tuple[str, str, object],
    interrupted: Interrupted,
    tmp_path: Path,
    fixtures_on_path: Path,
    cli,
):
    run_dir = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"  # hypothesis reuses tmp_path
    shutil.copytree(interrupted.run_dir, run_dir)
    (tmp_path / "cache").mkdir(exist_ok=True)
    shutil.copyfile(interrupted.key, tmp_path / "cache" / KEY)
    _mutate(run_dir, *mutation)
    out = cli("run", "--resume", str(run_dir))
    assert "Traceback" not in out.out + out.err
    if out.code == 0 and mutation[0] != "results.json":
        results = json.loads((run_dir / "results.json").read_text())
        assert _figures(results) == interrupted.reference
    else:
        assert out.code in (0, 2), (out.code, out.err)
    assert not (tmp_path / "code-ran").exists()


@st.composite
def _results_edits(draw: st.DrawFn) -> tuple[list[str], object]:
    """A path into results.json (keys and list indices as strings) and a value to put there."""
    path = draw(
        st.sampled_from(
            [
                ["summary"],
                ["summary", "speedup"],
                ["summary", "final"],
                ["steps"],
                ["steps", "0"],
                ["steps", "0", "latency_ms"],
                ["steps", "0", "latency_ms", "p50"],
                ["steps", "1", "size_bytes"],
                ["steps", "1", "notes"],
                ["steps", "2", "params"],
                ["environment", "versions"],
                ["recipe", "name"],
                ["warnings"],
                ["search"],
            ]
        )
    )
    return path, draw(_JSON_VALUES)


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(edit=_results_edits())
def test_every_edit_of_a_results_file_renders_or_is_refused(
    edit: tuple[list[str], object], interrupted: Interrupted, tmp_path: Path, cli
):
    run_dir = Path(tempfile.mkdtemp(dir=tmp_path)) / "run"
    shutil.copytree(interrupted.finished, run_dir)
    path, value = edit
    results = json.loads((run_dir / "results.json").read_text())
    node = results
    for part in path[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(path[-1])] = value
    else:
        node[path[-1]] = value
    (run_dir / "results.json").write_text(json.dumps(results))
    out = cli("report", str(run_dir))
    assert out.code in (0, 2), (out.code, out.err)
    assert "Traceback" not in out.out + out.err
