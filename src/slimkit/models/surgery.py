"""Architecture edits recorded as data, so a saved model can be rebuilt without pickle.

Dropping transformer layers is such an edit: the student keeps teacher layers ``[2, 5]`` and its
``arch`` records ``{"layers": {"path": "encoder.encoder.layer", "keep": [2, 5]}}``; loading
builds the full architecture and drops the same layers before the weights go in.
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.errors import ModelLoadError, StepError
from slimkit.models.arch import Arch
from slimkit.models.blocks import drop_blocks
from slimkit.models.families import find_family
from slimkit.models.resolution import resize_inputs

_LAYER_LISTS = ("layer", "layers", "blocks", "h")


def layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's stack of transformer layers: its family's (see :mod:`.families`), else a
    ModuleList named like ``layer``/``layers`` (a user's own transformer)."""
    found = find_family(model)
    if found is not None:
        if found.family.shared:
            raise StepError(
                f"{found.family.name}: every depth reuses the same layer weights, so a student "
                "cannot keep some layers and drop others. Prune its heads or FFN (they shrink "
                "every depth at once), or distil into a student model: of another family."
            )
        return found.path(found.family.layers), found.layers()
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
    replace(model, path, kept)
    for index, layer in enumerate(kept):  # decoders index their key/value cache by layer
        for module in layer.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = index  # type: ignore[assignment]  # a plain int
    for module in model.modules():  # Hugging Face models also read the depth off their config
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "num_hidden_layers"):
            config.num_hidden_layers = len(keep)
            types = getattr(config, "layer_types", None)
            if isinstance(types, list) and len(types) == len(stack):
                config.layer_types = [types[i] for i in keep]


def apply_edits(model: nn.Module, arch: Arch) -> None:
    """Replay the edits an ``arch`` records onto a freshly built ``model``."""
    if arch.layers is not None:
        keep_layers(model, arch.layers.path, list(arch.layers.keep))
    if arch.dropped is not None:
        drop_blocks(model, arch.dropped)
    if arch.resolution is not None:
        resize_inputs(model, arch.resolution)


def weight_rows(layer: nn.Module) -> torch.Tensor:
    """A projection's weight as ``[outputs, inputs]``: a Linear's own layout; GPT-2's Conv1D
    stores the transpose."""
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return weight if isinstance(layer, nn.Linear) else weight.t()


def slice_projection(layer: nn.Module, keep: torch.Tensor, outputs: bool) -> nn.Module:
    """A new projection of the same kind with only the ``keep`` outputs (or inputs)."""
    w = weight_rows(layer).detach()
    weight = w[keep] if outputs else w[:, keep]
    bias = getattr(layer, "bias", None)
    new_bias = None if bias is None else (bias.detach()[keep] if outputs else bias.detach())
    if isinstance(layer, nn.Linear):
        new: nn.Module = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        stored = weight
    else:  # transformers' Conv1D(nf=outputs, nx=inputs), weight [inputs, outputs]
        new = type(layer)(weight.shape[0], weight.shape[1])
        stored = weight.t()
    with torch.no_grad():
        for name, value in (("weight", stored), ("bias", new_bias)):
            target = getattr(new, name)
            if value is not None:
                target.copy_(value)
    return new


def replace(model: nn.Module, path: str, layer: nn.Module) -> None:
    """Put ``layer`` where the submodule named ``path`` is."""
    parent, _, child = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, layer)


def sync_head_counts(model: nn.Module) -> None:
    """Make each attention module's head-count attributes match its (pruned) projections:
    attention reshapes by these, so they must say how many heads are left."""
    found = find_family(model, strict=False)
    if found is None:
        return
    attention = found.family.attention
    for layer in found.layers():
        module = layer.get_submodule(attention.module)
        width = weight_rows(layer.get_submodule(attention.out)).shape[1]
        for name in attention.heads:
            setattr(module, name, width // getattr(module, attention.head_size))
        for name in attention.widths:
            setattr(module, name, width)
