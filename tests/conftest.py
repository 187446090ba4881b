"""Shared fixtures: tiny models and data sets, an isolated cache, and an in-process CLI."""

from __future__ import annotations

import copy
import logging
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tests.helpers import FIXTURES, trained_tiny_cnn, write_blobs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first. Under ``--dist worksteal`` (the Makefile's) a worker with nothing left
    takes the back half of the other's queue; with the slow tests at the front, what is left for
    the end is short tests both workers share, not one long test the other worker waits out."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def _no_user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module and session fixtures are set up before :func:`_isolated`: their runs get a cache
    of the session's, never the user's ``~/.cache/slimkit``."""
    with pytest.MonkeyPatch.context() as m:
        m.setenv("SLIMKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


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


@pytest.fixture
def blobs_npz(tmp_path: Path) -> Path:
    """A user data set on disk: 300 tiny images, 3 classes."""
    return write_blobs(tmp_path / "blobs.npz")


@pytest.fixture(scope="session")
def _trained_once(tmp_path_factory: pytest.TempPathFactory):
    """tiny_cnn trained on the blobs, once per test process (:func:`trained_tiny_cnn`)."""
    from slimkit.data import load_data

    torch.set_num_threads(1)
    data = load_data(str(write_blobs(tmp_path_factory.mktemp("blobs") / "blobs.npz")))
    return trained_tiny_cnn(data), data


@pytest.fixture
def trained(_trained_once, fixtures_on_path: Path):
    """``(net, data)``: a copy of the trained tiny_cnn, the test's own to change."""
    net, data = _trained_once
    return copy.deepcopy(net), data


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
