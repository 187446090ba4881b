"""Shared fixtures: tiny models and data sets, an isolated cache, and an in-process CLI."""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own baseline cache and runs/ folder, and one thread (repeatable)."""
    monkeypatch.setenv("SLIMKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)


@pytest.fixture
def fixtures_on_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make tests/fixtures importable, as a user's own package would be."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    return FIXTURES


def blobs(n: int, seed: int = 0, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of 1x8x8 images, each a bright square in a different corner plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 1, size, size)).astype(np.float32)
    for i, c in enumerate(y):
        r, col = [(0, 0), (0, 4), (4, 2)][c]
        x[i, 0, r : r + 4, col : col + 4] += 2.0
    return x, y


@pytest.fixture
def blobs_npz(tmp_path: Path) -> Path:
    """A user data set on disk: 300 tiny images, 3 classes."""
    x, y = blobs(300)
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x, y=y)
    return path


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run ``slimkit ARGS`` in-process through the real entry point; return code and output."""
    from slimkit.cli import main

    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["slimkit", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
