"""Task metrics over a whole split, computed from logits and labels."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from slimkit.data.bundle import Batch
from slimkit.registry import Registry

Metric = Callable[[torch.Tensor, torch.Tensor], float]

METRICS: Registry[Metric] = Registry("metric")


@METRICS.register("accuracy")
def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy, in percent."""
    return float((logits.argmax(dim=1) == labels).float().mean()) * 100.0


@METRICS.register("macro-f1")
def macro_f1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """F1 averaged over classes with equal weight, in percent (for imbalanced data)."""
    pred = logits.argmax(dim=1)
    scores = []
    for c in torch.unique(labels):
        tp = float(((pred == c) & (labels == c)).sum())
        fp = float(((pred == c) & (labels != c)).sum())
        fn = float(((pred != c) & (labels == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return 100.0 * sum(scores) / len(scores)


def predict(
    engine: Callable[..., torch.Tensor], batches: Iterable[Batch]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``engine`` over ``batches``; return all logits and labels, concatenated."""
    outs, labels = [], []
    with torch.inference_mode():
        for inputs, y in batches:
            outs.append(engine(inputs).float())
            labels.append(y)
    return torch.cat(outs), torch.cat(labels)
