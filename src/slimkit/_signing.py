"""This machine's signature: how slimkit tells a file it wrote here from one handed over.

Some records name code: a run's factories (``imports.json``), the architecture of a model
saved from a user's own factory. Building from them imports that code, which a file from
elsewhere must not be able to ask for. So slimkit signs such records with a random key kept in
its cache folder, readable by the owner alone, and builds from a record only if the signature
verifies (or the user opts in). The key never leaves the machine; deleting the cache folder
makes every earlier record "from elsewhere".
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from slimkit.errors import RunDirError

_KEY = "run-key"


def cache_dir() -> Path:
    """``$SLIMKIT_CACHE``, else ``$XDG_CACHE_HOME/slimkit``, else ``~/.cache/slimkit``."""
    if os.environ.get("SLIMKIT_CACHE"):
        return Path(os.environ["SLIMKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "slimkit"


def usable_cache_dir() -> Path:
    """:func:`cache_dir`, created if need be; RunDirError, before any work, if it cannot be."""
    path = cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as err:
        raise RunDirError(
            f"slimkit's cache folder {path} cannot be used: {err.strerror or err}. Point "
            "SLIMKIT_CACHE at a writable folder (or unset it for ~/.cache/slimkit)."
        ) from None
    return path


def sign(payload: bytes) -> str:
    """The hex HMAC-SHA256 of ``payload`` under this machine's key."""
    return hmac.new(_key(), payload, hashlib.sha256).hexdigest()


def verify(payload: bytes, mac: object) -> bool:
    """Whether ``mac`` is this machine's signature of ``payload``."""
    return isinstance(mac, str) and hmac.compare_digest(mac, sign(payload))


def _key() -> bytes:
    """This machine's key, made on first use (mode 0600, written whole or not at all)."""
    path = usable_cache_dir() / _KEY
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    except OSError as err:
        raise RunDirError(f"Cannot read slimkit's key {path}: {err.strerror}.") from None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{_KEY}.")
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        os.replace(tmp, path)
        return path.read_bytes()
    except OSError as err:
        raise RunDirError(f"Cannot create slimkit's key {path}: {err.strerror}.") from None
