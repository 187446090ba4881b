"""Rich-backed progress for the CLI, and silencing of noisy third-party loggers."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


def quiet_libraries() -> None:
    """Keep third-party import chatter (torchao kernels, HF progress bars) off the user's screen."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded at run time
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # rich shows slimkit's own bars
    warnings.filterwarnings("ignore")
    # torchao and torch attach their own handlers and levels to their loggers at import (kernel
    # libraries it cannot load on this CPU, deprecations); the CLI reports through rich, so
    # everything below ERROR is dropped for the whole process.
    logging.disable(logging.WARNING)


class _Task:
    def __init__(self, progress: Progress, task_id: int) -> None:
        self._progress, self._id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._id, n)  # type: ignore[arg-type]

    def update(self, description: str) -> None:
        self._progress.update(self._id, description=description)  # type: ignore[arg-type]


class RichProgress:
    """Progress bars for every loop a person waits for; inner loops vanish when done."""

    def __init__(self, console: Console) -> None:
        self._bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._depth = 0

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bars.stop()

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[_Task]:
        task_id = self._bars.add_task(description, total=total)
        self._depth += 1
        try:
            yield _Task(self._bars, task_id)
        finally:
            self._depth -= 1
            if self._depth > 0:
                self._bars.remove_task(task_id)
            else:
                done = self._bars.tasks[-1].total if total is not None else 1
                self._bars.update(task_id, total=done, completed=done)
