"""Architecture edits recorded as data, so a saved model can be rebuilt without pickle.

Dropping transformer layers is such an edit: the student keeps teacher layers ``[2, 5]`` and its
``arch`` records ``{"layers": {"path": "encoder.encoder.layer", "keep": [2, 5]}}``; loading
builds the full architecture and drops the same layers before the weights go in.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from slimkit.errors import ModelLoadError, StepError
from slimkit.models.arch import Arch

_LAYER_LISTS = ("layer", "layers", "blocks", "h")


def layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's stack of transformer layers: the ModuleList named like ``layer``/``layers``."""
    for name, module in model.named_modules():
        named_like = name.rpartition(".")[2] in _LAYER_LISTS
        if isinstance(module, nn.ModuleList) and named_like and len(module) >= 1:
            return name, module
    raise StepError(
        f"{type(model).__name__} has no stack of transformer layers (a ModuleList named "
        f"{'/'.join(_LAYER_LISTS)}), so layers cannot be dropped. Build the student by width: "
        "or give a student model:."
    )


def keep_layers(model: nn.Module, path: str, keep: list[int]) -> None:
    """Keep only layers ``keep`` (in order) of the ModuleList at ``path``, in place."""
    stack = model.get_submodule(path)
    if not isinstance(stack, nn.ModuleList):
        raise ModelLoadError(f"{path!r} is not a list of layers in {type(model).__name__}.")
    if not keep or any(not 0 <= i < len(stack) for i in keep) or len(set(keep)) != len(keep):
        raise StepError(
            f"Layers to keep must be distinct indices in 0..{len(stack) - 1}, got {keep}."
        )
    kept = nn.ModuleList([stack[i] for i in keep])
    parent_name, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, kept)
    for module in model.modules():  # Hugging Face models also read the depth off their config
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "num_hidden_layers"):
            config.num_hidden_layers = len(keep)


def apply_edits(model: nn.Module, arch: Arch) -> None:
    """Replay the edits an ``arch`` records onto a freshly built ``model``."""
    if arch.layers is not None:
        keep_layers(model, arch.layers.path, list(arch.layers.keep))


def attention_blocks(model: nn.Module) -> list[tuple[str, Any, nn.Linear]]:
    """``(name, self-attention, output projection)`` for every BERT-style attention block."""
    found = []
    for name, m in model.named_modules():
        attn, out = getattr(m, "self", None), getattr(getattr(m, "output", None), "dense", None)
        if all(
            isinstance(getattr(attn, p, None), nn.Linear) for p in ("query", "key", "value")
        ) and isinstance(out, nn.Linear):
            found.append((name, attn, out))
    return found


def ffn_blocks(model: nn.Module) -> list[tuple[str, nn.Linear, nn.Linear]]:
    """``(name, up-projection, down-projection)`` for every BERT-style feed-forward block."""
    found = []
    for name, m in model.named_modules():
        up = getattr(getattr(m, "intermediate", None), "dense", None)
        down = getattr(getattr(m, "output", None), "dense", None)
        if isinstance(up, nn.Linear) and isinstance(down, nn.Linear):
            found.append((name, up, down))
    return found


def sync_head_counts(model: nn.Module) -> None:
    """Make each attention module's head-count attributes match its (pruned) projections."""
    for _, attn, _ in attention_blocks(model):
        attn.all_head_size = attn.query.out_features
        attn.num_attention_heads = attn.query.out_features // attn.attention_head_size
