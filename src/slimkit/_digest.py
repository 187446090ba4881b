"""Content digests of tensors and models, for keys that must change when anything computed does."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch
from torch import nn


def update_tensors(digest: hashlib._Hash, tensors: Iterable[torch.Tensor]) -> None:
    """Feed each tensor's dtype, shape and bytes to ``digest``, in order."""
    for tensor in tensors:
        digest.update(str((tensor.dtype, tuple(tensor.shape))).encode())
        raw = tensor.detach().cpu().contiguous().view(-1).view(torch.uint8)
        digest.update(bytes(raw.numpy().data))


def state_tensors(model: nn.Module) -> list[torch.Tensor]:
    """The tensors of ``model``'s state dict, in sorted key order."""
    state = model.state_dict()
    return [state[k] for k in sorted(state) if isinstance(state[k], torch.Tensor)]


def model_digest(model: nn.Module) -> str | None:
    """A digest of what ``model`` computes, as far as it can be read without running it: its
    module tree (types and settings, as ``repr`` prints them), the hooks on each module, and
    every parameter and buffer, persistent or not. None for a model holding tensors whose bytes
    cannot be read as such (quantized or wrapper tensor subclasses)."""
    digest = hashlib.sha256(repr(model).encode())
    for name, module in model.named_modules():
        hooks = (*module._forward_pre_hooks.values(), *module._forward_hooks.values())
        kind = f"{type(module).__module__}.{type(module).__qualname__}"
        digest.update(f"{name}:{kind}:{[repr(h) for h in hooks]}".encode())
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    digest.update(str(sorted(tensors)).encode())
    try:
        update_tensors(digest, (tensors[k] for k in sorted(tensors)))
    except (RuntimeError, TypeError, NotImplementedError):
        return None
    return digest.hexdigest()
