"""Progress for the CLI (rich bars on a terminal, plain lines elsewhere), and silencing of
noisy third-party loggers."""

from __future__ import annotations

import logging
import os
import time
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


class PlainProgress:
    """Progress as plain, flushed lines, for output that is not a terminal (a log file, CI).

    Rich draws live bars only on a terminal; piped, a ten-minute training printed nothing. Each
    task prints a line when it starts and whenever its description changes (an epoch's loss
    and validation accuracy); top-level tasks also print how long they took.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._start = time.perf_counter()
        self._depth = 0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def line(self, text: str) -> None:
        elapsed = time.perf_counter() - self._start
        self._console.print(f"[{elapsed:7.1f}s] {'  ' * (self._depth - 1)}{text}", markup=False)
        self._console.file.flush()

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[_PlainTask]:
        self._depth += 1
        began = time.perf_counter()
        self.line(description)
        handle = _PlainTask(self, description)
        try:
            yield handle
        finally:
            if self._depth == 1:
                self.line(f"{handle.description}: done in {time.perf_counter() - began:.1f}s")
            self._depth -= 1


class _PlainTask:
    def __init__(self, progress: PlainProgress, description: str) -> None:
        self._progress, self.description = progress, description

    def advance(self, n: int = 1) -> None:
        pass  # batches are not worth a line each

    def update(self, description: str) -> None:
        if description != self.description:
            self.description = description
            self._progress.line(description)


def progress_for(console: Console) -> RichProgress | PlainProgress:
    """Live bars on a terminal, plain lines anywhere else."""
    return RichProgress(console) if console.is_terminal else PlainProgress(console)
