"""Which code a run imported, signed, so that a run directory cannot vouch for itself.

A recipe may name a factory (``user_models.py:make``, ``package.module:make``): running that
recipe imports and runs its code, which the user asked for. A run directory is different: it is
something users pass around, and ``--resume`` reads the recipe saved inside it. So a run records
each factory its recipe names with the sha256 of the file that defines it, in ``imports.json``,
signed with a key that never leaves this machine (:mod:`slimkit._signing`). A resumed
run imports a factory only if this machine's signature vouches for that same file, unchanged; a
run directory made elsewhere, or edited, needs the user's explicit ``--trust-checkpoint``.

Files are located without being imported (the import system's path finder only looks), so
checking a ledger runs nothing.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from slimkit._io import write_json
from slimkit._signing import sign, verify
from slimkit.errors import UnsafeCheckpointError, quote
from slimkit.models.sources import ModelSpec, is_import_path

if TYPE_CHECKING:
    from slimkit.recipe import Recipe

FILE = "imports.json"


def code_refs(recipe: Recipe) -> list[str]:
    """Every factory (import-path model source) ``recipe`` names, wherever it nests."""
    found: list[str] = []
    stack: list[Any] = [recipe.model, recipe.baseline, *(s.config for s in recipe.steps)]
    while stack:
        item = stack.pop()
        if isinstance(item, ModelSpec) and is_import_path(item.source):
            found.append(item.source)
        elif isinstance(item, BaseModel):
            stack.extend(getattr(item, name) for name in type(item).model_fields)
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return sorted(set(found))


def fingerprint(ref: str) -> dict[str, str | None]:
    """``{"ref", "file", "sha256"}`` of the file factory ``ref`` would be imported from, found
    without importing anything; ``file`` is None for a module compiled into Python."""
    module_ref = ref.rpartition(":")[0]
    if module_ref.endswith(".py"):
        path: Path | None = Path(module_ref).expanduser().resolve()
    else:
        path = _module_file(module_ref)
    if path is None or not path.is_file():
        return {"ref": ref, "file": None, "sha256": None}
    return {"ref": ref, "file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _module_file(name: str) -> Path | None:
    loaded = sys.modules.get(name)
    if loaded is not None:
        file = getattr(loaded, "__file__", None)
        return Path(file).resolve() if file else None
    cwd = str(Path.cwd())
    # The order the import would use: sources.py puts the working directory first if absent.
    search: list[str] | None = sys.path if {"", cwd} & set(sys.path) else [cwd, *sys.path]
    parts = name.split(".")
    spec = None
    for i in range(len(parts)):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    origin = spec.origin if spec is not None else None
    return Path(origin).resolve() if origin and os.path.isfile(origin) else None


def record(run_dir: Path, refs: list[str]) -> None:
    """Sign and write the ledger of ``refs`` for ``run_dir`` (before any of them is imported)."""
    entries = [fingerprint(ref) for ref in refs]
    write_json(run_dir / FILE, {"imports": entries, "mac": sign(_payload(entries))})


def check(run_dir: Path, refs: list[str], trusted: bool) -> None:
    """Refuse to go on unless every factory in ``refs`` is one this machine's run in
    ``run_dir`` imported, unchanged since; ``trusted`` (``--trust-checkpoint``) waives it."""
    if trusted or not refs:
        return
    signed = _signed_entries(run_dir / FILE)
    for ref in refs:
        if fingerprint(ref) not in signed:
            raise UnsafeCheckpointError(
                f"The run in {run_dir} names the factory {quote(ref)}, and resuming it would "
                "import and run that code, but this machine's record does not vouch for it: the "
                "run directory was made elsewhere, edited, or the file changed since. slimkit "
                "refused to run it. If you trust that code, resume with --trust-checkpoint."
            )


def _signed_entries(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["imports"]
        valid = verify(_payload(entries), data["mac"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return []
    return list(entries) if valid else []


def _payload(entries: Any) -> bytes:
    """What is signed: the entries in canonical JSON."""
    return json.dumps(entries, sort_keys=True).encode()
