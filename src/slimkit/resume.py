"""Resumable runs: every finished step's model is kept under a content key until the run ends.

A run writes ``RUN_DIR/checkpoints/NN-name/`` as it goes: the model a step produced
(``model.safetensors``: weights + architecture manifest), what it noted, and ``step.json`` with
the step's *key* and the sha256 of each file. A step's key hashes its config with the content
hash of the model it was applied to (which in turn was keyed the same way, back to the recipe's
baseline settings), so a step is reused only when everything that produced it is unchanged; the
file hashes catch a snapshot that was torn or edited, and such a step is simply computed again.
A step whose training was interrupted resumes from the trainer's epoch checkpoint in
``NN-name/train-KEY/``. Once the run has written ``results.json`` the folder is removed: a
finished run directory holds results, not checkpoints.

A run directory is a file someone may hand over, so nothing in it is trusted:

- ``step.json`` may name only the files slimkit writes, where it writes them
  (``checkpoints/NN-name/model.safetensors``, ``artifacts/NN-name.onnx``); anything else, a
  symbolic link or a special file anywhere in the folder, is refused;
- a kept model's architecture may name a factory (code) only if the run's recipe names it and
  this machine's signed ledger vouches for it (:mod:`slimkit.ledger`);
- nothing unpickles: a PT2E step's ``.pt2`` program is never read back (``torch.export.load``
  unpickles); such a step is applied again from the model before it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimkit._io import write_json
from slimkit.errors import ModelLoadError, RunDirError, UnsafeCheckpointError, quote
from slimkit.models.arch import Arch
from slimkit.models.persist import save_model, saved_arch
from slimkit.models.sources import ModelSpec, build_model, is_import_path
from slimkit.runtimes import RUNTIMES
from slimkit.state import ModelState

FOLDER = "checkpoints"
_RECORD = "step.json"
_MODEL = "model.safetensors"
_ARTIFACT_SUFFIXES = (".onnx",)  # artifacts a kept step may carry beside its model
_RECORD_KEYS = {"key", "model", "runtime", "artifact", "notes", "wall_s", "sha256"}


def chain_key(previous: str, settings: dict[str, Any]) -> str:
    """The key of a step: a hash of the previous key and this step's settings."""
    text = previous + json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def content_sha256(path: Path) -> str:
    """sha256 of a file's content. A safetensors header is hashed in canonical key order:
    the library writes its metadata map in a different order in every process.

    Raises ValueError for a safetensors file whose header cannot be what it claims.
    """
    digest = hashlib.sha256()
    with path.open("rb") as f:
        if path.suffix == ".safetensors":
            size = int.from_bytes(f.read(8), "little")
            if size > os.fstat(f.fileno()).st_size:
                raise ValueError(f"{path}: header length {size} exceeds the file")
            header = json.loads(f.read(size))
            digest.update(json.dumps(header, sort_keys=True).encode())
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_run_dir(run_dir: Path) -> None:
    """Refuse a run directory holding a symbolic link or anything but folders and files.

    slimkit never writes either; followed, a link would read (or overwrite) a file outside the
    run, and reading a FIFO or a device would hang.
    """
    for root, dirs, files in os.walk(run_dir):
        for name in [*dirs, *files]:
            path = Path(root) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "a special file"
                raise RunDirError(
                    f"{path} is {kind}; slimkit never writes one in a run directory, so this "
                    f"one did not come from a run. Refusing to resume {run_dir}."
                )


@dataclass(frozen=True)
class Snapshot:
    """A finished step: its model state, architecture record, wall time and content hash."""

    state: ModelState
    arch: Arch
    wall_s: float
    digest: str  # sha256 of the model file: what the next step's key builds on


@dataclass(frozen=True)
class StepStore:
    """The checkpoints of one run directory.

    ``factories`` are the import-path factories a kept model's architecture may name: the
    ones the run's recipe names and :func:`slimkit.ledger.check` vouched for. ``trusted`` (the
    user's ``--trust-checkpoint``) lets it name any.
    """

    run_dir: Path
    factories: frozenset[str] = field(default_factory=frozenset)
    trusted: bool = False

    @property
    def root(self) -> Path:
        return self.run_dir / FOLDER

    def training_dir(self, name: str, key: str) -> Path:
        """Where the trainer of step ``name`` keeps its epoch checkpoint, per key: an epoch
        checkpoint of the step as it was before the recipe was edited is never resumed from."""
        return self.root / name / f"train-{key[:16]}"

    def save(
        self, name: str, key: str, state: ModelState, arch: Arch, wall_s: float
    ) -> Snapshot | None:
        """Keep step ``name``'s result; written last, ``step.json`` marks it complete.

        A step that left an exported program (``.pt2``) is not kept (None): reading one back
        unpickles, so a resumed run applies that step again instead.
        """
        if state.artifact is not None and state.artifact.suffix == ".pt2":
            return None
        folder = self.root / name
        model_file = save_model(state.module, folder / _MODEL, arch)
        files = [model_file] + ([state.artifact] if state.artifact is not None else [])
        digests = {self._rel(f): content_sha256(f) for f in dict.fromkeys(files)}
        record = {
            "key": key,
            "model": self._rel(model_file),
            "runtime": state.runtime,
            "artifact": self._rel(state.artifact) if state.artifact is not None else None,
            "notes": state.notes,
            "wall_s": wall_s,
            "sha256": digests,
        }
        write_json(folder / _RECORD, record)
        for stale in folder.glob("train-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return Snapshot(state, arch, wall_s, digests[self._rel(model_file)])

    def load(self, name: str, key: str) -> Snapshot | None:
        """Step ``name``'s kept result if it was produced under ``key`` and is intact.

        A record that is missing, torn, edited or stale gives None (the step is computed
        again); one naming files slimkit does not write, or code, raises (see :meth:`audit`).
        """
        checked = self._checked(name)
        if checked is None:
            return None
        record, arch = checked
        if record["key"] != key or arch is None:
            return None
        expected = {record["model"], *([record["artifact"]] if record["artifact"] else [])}
        if set(record["sha256"]) != expected or not all(
            self._intact(rel, digest) for rel, digest in record["sha256"].items()
        ):
            return None
        model_file = self.run_dir / record["model"]
        code = is_import_path(arch.source)
        module = build_model(ModelSpec(source=str(model_file), trust_checkpoint=code))
        artifact = self.run_dir / record["artifact"] if record["artifact"] else None
        state = ModelState(module, record["runtime"], artifact, list(record["notes"]))
        return Snapshot(state, arch, record["wall_s"], record["sha256"][record["model"]])

    def audit(self) -> None:
        """Check every kept step before a resumed run does any work: a record naming a file
        slimkit does not write, or a kept model naming a factory the recipe does not, raises
        RunDirError / UnsafeCheckpointError (a damaged one is left to be computed again)."""
        if self.root.is_dir():
            for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
                self._checked(folder.name)

    def _checked(self, name: str) -> tuple[dict[str, Any], Arch | None] | None:
        """:meth:`_record` of ``name`` and its model's architecture (None when unreadable),
        refused if it names files or code it may not."""
        record = self._record(name)
        if record is None:
            return None
        model_rel = f"{FOLDER}/{name}/{_MODEL}"
        artifacts = {f"artifacts/{name}{suffix}" for suffix in _ARTIFACT_SUFFIXES}
        if record["model"] != model_rel or record["artifact"] not in {None, *artifacts}:
            named = record["artifact"] if record["model"] == model_rel else record["model"]
            raise RunDirError(
                f"{self.root / name / _RECORD} names {quote(named)} as the step's model or "
                f"artifact; slimkit keeps a step only in {model_rel} (and "
                f"artifacts/{name}.onnx), so this record was not written by a run. "
                "Refusing to resume from it."
            )
        return record, self._arch(self.run_dir / model_rel)

    def _arch(self, model_file: Path) -> Arch | None:
        """The architecture a kept model names; a factory in it must be one the run vouched
        for, since building the model would import it."""
        try:
            arch = saved_arch(model_file) if model_file.is_file() else None
        except ModelLoadError:  # damaged: its hash will not match, and the step is recomputed
            return None
        source = arch.source if arch is not None else ""
        if is_import_path(source) and source not in self.factories and not self.trusted:
            raise UnsafeCheckpointError(
                f"{model_file} says it is built by the factory {quote(source)}, which the "
                "run's recipe does not name; building it would run that code. Refusing to "
                "resume from it."
            )
        return arch

    def clear(self) -> None:
        """Remove the checkpoints once the run's results are written."""
        shutil.rmtree(self.root, ignore_errors=True)

    def _record(self, name: str) -> dict[str, Any] | None:
        """``step.json`` of ``name`` if it has the keys and types slimkit writes, else None."""
        try:
            record = json.loads((self.root / name / _RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return None
        valid = (
            isinstance(record, dict)
            and set(record) == _RECORD_KEYS
            and all(isinstance(record[k], str) for k in ("key", "model", "runtime"))
            and (record["artifact"] is None or isinstance(record["artifact"], str))
            and record["runtime"] in RUNTIMES
            and isinstance(record["notes"], list)
            and all(isinstance(n, str) for n in record["notes"])
            and isinstance(record["wall_s"], int | float)
            and math.isfinite(record["wall_s"])
            and record["wall_s"] >= 0
            and isinstance(record["sha256"], dict)
            and all(isinstance(v, str) for v in record["sha256"].values())
        )
        return record if valid else None

    def _intact(self, rel: str, digest: str) -> bool:
        try:
            return content_sha256(self.run_dir / rel) == digest
        except (OSError, ValueError, RecursionError):
            return False

    def _rel(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.run_dir.resolve()))
