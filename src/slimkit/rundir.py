"""Run directories: a fresh folder per run, and the environment the run measured on."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from slimkit.errors import RunDirError

DEFAULT_ROOT = Path("runs")


def create_run_dir(name: str, out: str | os.PathLike[str] | None = None) -> Path:
    """Make the run directory: ``out`` exactly (new or empty), else ``runs/<name>-<time>``.

    An earlier run is never overwritten: a non-empty ``out`` is an error, and generated names get
    a numeric suffix when the second is already taken. The run claims its folder by creating
    ``artifacts/`` inside it, which succeeds for one process only, so two runs started together
    never share a directory.
    """
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise _taken(path)
        if not _claim(path):
            raise _taken(path)
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = DEFAULT_ROOT / f"{name}-{stamp}", 2
    while not _claim(path):
        path = DEFAULT_ROOT / f"{name}-{stamp}-{n}"
        n += 1
    return path


def _claim(path: Path) -> bool:
    """Create ``path/artifacts`` if no other run has: False when it already exists."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / "artifacts").mkdir()
    except FileExistsError:
        return False
    except OSError as err:
        raise RunDirError(f"Cannot create run directory {str(path)!r}: {err.strerror}.") from None
    if any(p.name != "artifacts" for p in path.iterdir()):  # not empty: leave it as it was
        (path / "artifacts").rmdir()
        return False
    return True


def _taken(path: Path) -> RunDirError:
    return RunDirError(
        f"Run directory {str(path)!r} already exists and is not empty; slimkit never "
        "overwrites a run. Choose a new --out, or omit it for a fresh runs/<name>-<time>."
    )


def environment(threads: int) -> dict[str, Any]:
    """Versions, CPU and thread count: what a reader needs to trust or reproduce the figures."""
    versions: dict[str, str | None] = {}
    for pkg in (
        "slimkit",
        "torch",
        "onnxruntime",
        "onnx",
        "torch-pruning",
        "transformers",
        "accelerate",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "cuda": torch.cuda.is_available(),
        "versions": versions,
    }


def busy_warning() -> str | None:
    """A warning when other work competes for the CPU, which no interleaving can correct.

    Two processes that each run OpenMP threads on the same cores can slow PyTorch eager 100x
    or more while ONNX Runtime's pool barely notices: ratios between runtimes then mean
    nothing. A 1-minute load average above the core count plus one flags it.
    """
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return None
    cores = os.cpu_count() or 1
    if load <= cores + 1:
        return None
    return (
        f"the machine was busy while timing (load average {load:.1f} on {cores} cores): other "
        "processes compete for the CPU, so latencies and speedups in this run are unreliable"
    )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
