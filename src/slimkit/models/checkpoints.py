"""Checkpoints from elsewhere: PyTorch pickles read as tensors, never as code.

slimkit's own format is :mod:`slimkit.models.persist` (safetensors plus a manifest). A user's
``.pt`` / ``.bin`` is read with ``torch.load(weights_only=True)``; one that needs full
unpickling is recognised statically (:mod:`pickletools`) and refused unless the user opts in.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from slimkit.errors import ModelLoadError, UnsafeCheckpointError


def load_checkpoint_state(path: Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a PyTorch checkpoint, read with ``weights_only=True`` (no code runs).

    Accepts a bare state dict, the common ``{"state_dict": ...}`` / ``{"model": ...}`` wrappers
    and, only with ``trust``, a checkpoint that needs full unpickling (a whole pickled module,
    custom classes): unpickling runs whatever code the file names, so it is the user's explicit
    opt-in (``--trust-checkpoint``) for a file they trust.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        if not trust and _names_code(path):
            raise UnsafeCheckpointError(
                f"{path} is not a plain weights checkpoint: loading it would unpickle arbitrary "
                "Python objects, and unpickling can run any code the file names. slimkit refused "
                "to load it. If you trust where it came from, pass --trust-checkpoint (recipe: "
                "model.trust_checkpoint: true); better, re-save it as a state_dict "
                "(torch.save(model.state_dict(), ...)) or as safetensors."
            ) from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"{path} is not a readable PyTorch checkpoint: {first}") from None
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict | nn.Module):
            inner = obj[key]
            obj = inner.state_dict() if isinstance(inner, nn.Module) else inner
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path} holds no state dict of tensors.")
    return obj


_CODE_OPS = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}


def _names_code(path: Path) -> bool:
    """Whether ``path`` is a well-formed pickle (bare, or a torch.save archive's ``data.pkl``)
    that names Python callables: loadable, but only by running them. Read statically with
    :mod:`pickletools`; nothing in the file is executed. Garbage is not such a file."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.read(member)
        else:
            data = path.read_bytes()
        ops = {op.name for op, _, _ in pickletools.genops(data)}
    except Exception:  # not a pickle at all: truncated, random bytes, another format
        return False
    return bool(ops & _CODE_OPS)
