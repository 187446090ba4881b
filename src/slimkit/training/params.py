"""Which parameters train, and how fast: depth groups, freezing, gradual unfreezing, layer LRs.

Transfer learning treats a network as a stack from input to output. Lower layers hold generic
features worth keeping, upper layers task-specific ones, so fine-tuning freezes the bottom
(feature extraction), thaws it from the top one block per epoch (gradual unfreezing, Howard &
Ruder 2018), or gives lower blocks smaller learning rates (discriminative / layer-wise LR).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import nn

from slimkit.errors import StepError
from slimkit.layers import check_names_exist, select


def _group_key(name: str) -> str:
    """The block a parameter belongs to: its path up to the first numeric index (a block of a
    ModuleList / Sequential), else its first two module components."""
    parts = name.split(".")[:-1]
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:2]) or name


def depth_groups(model: nn.Module) -> list[list[tuple[str, nn.Parameter]]]:
    """Parameters grouped by block, ordered from input to output (registration order).

    For a Hugging Face encoder classifier that is embeddings, each transformer layer, the head;
    for the built-in CNNs the stem, each stage block, the head.
    """
    groups: dict[str, list[tuple[str, nn.Parameter]]] = {}
    for name, param in model.named_parameters():
        groups.setdefault(_group_key(name), []).append((name, param))
    return list(groups.values())


def freeze(model: nn.Module, patterns: Sequence[str]) -> None:
    """Turn off gradients for the parameters of the layers ``patterns`` select."""
    check_names_exist(model, patterns, "freeze")
    for _, module in select(model, list(patterns)):
        module.requires_grad_(False)


@contextmanager
def frozen(model: nn.Module, patterns: Sequence[str]) -> Iterator[None]:
    """Freeze the layers ``patterns`` select for a block of training, then restore every
    parameter's flag as it was, also when the training fails."""
    given = {name: p.requires_grad for name, p in model.named_parameters()}
    freeze(model, patterns)
    try:
        yield
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(given[name])


def require_trainable(model: nn.Module) -> None:
    """Refuse to train a model whose every parameter is frozen: it would silently not learn."""
    if not any(p.requires_grad for p in model.parameters()):
        raise StepError(
            "Every parameter of the model is frozen, so training would change nothing. "
            "Freeze fewer layers (freeze:) or leave the head trainable."
        )


def unfrozen_at(epoch: int, groups: int) -> int:
    """How many top depth groups train at ``epoch`` (1-based) under gradual unfreezing."""
    return min(epoch, groups)


def layerwise_lrs(groups: int, lr: float, decay: float) -> list[float]:
    """Learning rate per depth group, input to output: the top gets ``lr``, each block below
    ``decay`` times the one above.

    >>> layerwise_lrs(3, 1.0, 0.5)
    [0.25, 0.5, 1.0]
    """
    return [lr * decay ** (groups - 1 - i) for i in range(groups)]
