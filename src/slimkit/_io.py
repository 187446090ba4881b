"""File writing that never leaves a torn file: write to a temporary sibling, then rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slimkit.errors import SaveError


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it is renamed onto ``path``.

    A crash mid-write leaves the old file (or none), never half of the new one.
    A failure to write (a full or read-only disk, no permission) raises
    :class:`~slimkit.errors.SaveError` naming ``path``.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise _cannot_write(target, err) from None
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp made it 0600; give it the permissions a plain open() would (umask applied).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as err:
        raise _cannot_write(target, err) from None
    except Exception as err:  # savers wrap the OS error in their own type (SafetensorError)
        if not _out_of_space(err):
            raise
        raise _cannot_write(target, err) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _out_of_space(err: Exception) -> bool:
    text = str(err)
    return any(s in text for s in ("No space left", "File too large", "Read-only file system"))


def _cannot_write(target: Path, err: Exception) -> SaveError:
    reason = getattr(err, "strerror", None) or " ".join(str(err).split())[:200]
    return SaveError(
        f"Cannot write {target}: {reason}. Nothing was replaced; free some space or choose "
        "another location, then run again."
    )


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def copy_file(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)
