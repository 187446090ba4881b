"""slimkit's exceptions: every failure a user can cause is one of these.

Messages name the bad value and say how to fix it; the CLI prints them as one paragraph and
exits with status 2. Anything else escaping the library is a bug in slimkit.
"""

from __future__ import annotations

import reprlib


class SlimkitError(Exception):
    """Base class of every error slimkit raises on purpose."""


class RecipeError(SlimkitError):
    """A recipe or config is malformed: unknown key, wrong type, out-of-range value."""


class ModelLoadError(SlimkitError):
    """A model source cannot be resolved or its weights cannot be loaded."""


class UnsafeCheckpointError(ModelLoadError):
    """A checkpoint would need full unpickling, which can run arbitrary code."""


class DataLoadError(SlimkitError):
    """A data source cannot be resolved, read or split."""


class ShapeMismatchError(SlimkitError):
    """A model and a data set do not fit together (input or class count)."""


class StepError(SlimkitError):
    """A pipeline step cannot be applied to the model it was given."""


class ExportError(SlimkitError):
    """A model cannot be exported, or the export does not match the PyTorch model."""


class RunDirError(SlimkitError):
    """The run directory cannot be created (it exists, or is not writable)."""


class RunInterrupted(SlimkitError):
    """A run was stopped (Ctrl-C) before it finished; its directory can be resumed."""

    def __init__(self, run_dir: object) -> None:
        super().__init__(
            f"Interrupted; the run so far is kept in {run_dir}. "
            f"Continue it with: slimkit run --resume {run_dir}"
        )
        self.run_dir = run_dir


class SaveError(SlimkitError):
    """A result cannot be written: the disk is full, read-only, or the folder is not writable."""


# Error messages quote user values; a value from a hostile file (a YAML alias tree that expands
# to billions of leaves, a megabyte string) must not make the message itself the problem.
_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxstring, _QUOTE.maxother = 3, 160, 160
_QUOTE.maxdict = _QUOTE.maxlist = _QUOTE.maxtuple = _QUOTE.maxset = 6


def few(names: list[str], n: int = 4) -> str:
    """The first ``n`` of ``names``, and how many more: what a message lists of a long list.

    >>> few(["a", "b", "c"], 2)
    'a, b and 1 more'
    """
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def quote(value: object, limit: int = 200) -> str:
    """``repr(value)`` cut to at most ``limit`` characters, without expanding nested values.

    >>> quote("x" * 1000)[:12], len(quote("x" * 1000)) <= 200
    ("'xxxxxxxxxxx", True)
    """
    text = _QUOTE.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
