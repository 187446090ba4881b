"""Resumable runs: every finished step's model is kept under a content key until the run ends.

A run writes ``RUN_DIR/checkpoints/NN-name/`` as it goes: the model a step produced (safetensors
+ architecture manifest, or the step's own ``.pt2`` program), what it noted, and ``step.json``
with the step's *key* and the sha256 of each file. A step's key hashes its config with the
content hash of the model it was applied to (which in turn was keyed the same way, back to the
recipe's baseline settings), so a step is reused only when everything that produced it is
unchanged; the file hashes catch a snapshot that was torn or edited. A step whose training was
interrupted resumes from the trainer's epoch checkpoint in ``NN-name/train-KEY/``. Once the run has
written ``results.json`` the folder is removed: a finished run directory holds results, not
checkpoints.

Nothing here unpickles: snapshots load through the same safetensors path as saved models.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit._io import write_json
from slimkit.models.persist import save_model
from slimkit.state import ModelState

FOLDER = "checkpoints"
_RECORD = "step.json"


def chain_key(previous: str, settings: dict[str, Any]) -> str:
    """The key of a step: a hash of the previous key and this step's settings."""
    text = previous + json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def content_sha256(path: Path) -> str:
    """sha256 of a file's content. A safetensors header is hashed in canonical key order:
    the library writes its metadata map in a different order in every process."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        if path.suffix == ".safetensors":
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
            digest.update(json.dumps(header, sort_keys=True).encode())
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """A finished step: its model state, architecture record, wall time and content hash."""

    state: ModelState
    arch: dict[str, Any]
    wall_s: float
    digest: str  # sha256 of the model file: what the next step's key builds on


@dataclass(frozen=True)
class StepStore:
    """The checkpoints of one run directory."""

    run_dir: Path

    @property
    def root(self) -> Path:
        return self.run_dir / FOLDER

    def training_dir(self, name: str, key: str) -> Path:
        """Where the trainer of step ``name`` keeps its epoch checkpoint, per key: an epoch
        checkpoint of the step as it was before the recipe was edited is never resumed from."""
        return self.root / name / f"train-{key[:16]}"

    def save(
        self, name: str, key: str, state: ModelState, arch: dict[str, Any], wall_s: float
    ) -> Snapshot:
        """Keep step ``name``'s result; written last, ``step.json`` marks it complete."""
        folder = self.root / name
        if state.artifact is not None and state.artifact.suffix == ".pt2":
            model_file = state.artifact  # an exported program is its own, reloadable, model
        else:
            model_file = save_model(state.module, folder / "model.safetensors", arch)
        files = [model_file] + ([state.artifact] if state.artifact is not None else [])
        digests = {self._rel(f): content_sha256(f) for f in dict.fromkeys(files)}
        record = {
            "key": key,
            "model": self._rel(model_file),
            "backend": state.backend,
            "artifact": self._rel(state.artifact) if state.artifact is not None else None,
            "notes": state.notes,
            "arch": arch,
            "wall_s": wall_s,
            "sha256": digests,
        }
        write_json(folder / _RECORD, record)
        for stale in folder.glob("train-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return Snapshot(state, arch, wall_s, digests[self._rel(model_file)])

    def load(self, name: str, key: str) -> Snapshot | None:
        """Step ``name``'s kept result if it was produced under ``key`` and is intact."""
        path = self.root / name / _RECORD
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            intact = record["key"] == key and all(
                content_sha256(self.run_dir / rel) == digest
                for rel, digest in record["sha256"].items()
            )
        except (OSError, ValueError, KeyError, TypeError):  # missing, torn or edited by hand
            return None
        if not intact:
            return None
        module = load_step_model(self.run_dir / record["model"])
        artifact = self.run_dir / record["artifact"] if record["artifact"] else None
        state = ModelState(module, record["backend"], artifact, list(record["notes"]))
        digest = record["sha256"][record["model"]]
        return Snapshot(state, record["arch"], float(record["wall_s"]), digest)

    def clear(self) -> None:
        """Remove the checkpoints once the run's results are written."""
        shutil.rmtree(self.root, ignore_errors=True)

    def _rel(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.run_dir.resolve()))


def load_step_model(path: Path) -> nn.Module:
    """The model a step's artifact holds: a ``.pt2`` program (trainable/eval-able again, as
    the pipeline's own), or safetensors + manifest."""
    if path.suffix == ".pt2":
        from torchao.quantization.pt2e import allow_exported_model_train_eval

        module = torch.export.load(str(path)).module()
        allow_exported_model_train_eval(module)
        return module
    from slimkit.models.sources import ModelSpec, build_model

    return build_model(ModelSpec(source=str(path)))
