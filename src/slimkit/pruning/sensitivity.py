"""Per-layer pruning sensitivity, and per-layer sparsities derived from it.

A layer's sensitivity curve is the validation metric with *only that layer* pruned, at
several sparsities. Layers differ a lot: a first convolution with 144 weights collapses at 50%,
a 36k-weight middle layer barely notices 90%. :func:`allocate` turns the curves into
per-layer sparsities that reach an overall target while losing the least: it repeatedly
raises the layer whose next step costs the fewest points per weight (or MAC) removed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from slimkit._io import atomic_path
from slimkit.data.bundle import DataBundle
from slimkit.errors import StepError
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.progress import SILENT, Progress
from slimkit.pruning.configs import MagnitudeConfig, Scope
from slimkit.pruning.unstructured import magnitude_prune

DEFAULT_RATIOS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class LayerSensitivity:
    """One layer's curve: metric at each sparsity, with that layer alone pruned. ``size`` is
    what the layer stands for in :func:`allocate`'s target: its weights, unless the measuring
    said otherwise (a channel group's weights, or its MACs)."""

    layer: str
    size: int
    baseline: float
    metric: dict[float, float]

    def drop(self, ratio: float) -> float:
        return 0.0 if ratio == 0 else self.baseline - self.metric[ratio]


def prunable_layers(model: nn.Module) -> list[tuple[str, int]]:
    return [
        (n, m.weight.numel())
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]


def layer_sensitivity(
    model: nn.Module,
    evaluate: Callable[[nn.Module], float],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    on_layer: Callable[[str], None] | None = None,
    layers: Mapping[str, int] | None = None,
) -> list[LayerSensitivity]:
    """Prune each Conv2d/Linear alone at each ratio (magnitude) and ``evaluate`` the result.

    ``layers`` measures only those, each standing for the size it maps to (a channel group's
    leader for its group's weights, or its MACs) where :func:`allocate` spreads a share."""
    if any(not 0 < r < 1 for r in ratios):
        raise StepError(f"Sensitivity ratios must lie in (0, 1), got {list(ratios)}.")
    measured = prunable_layers(model) if layers is None else list(layers.items())
    if not measured:
        return []
    baseline = evaluate(model)
    curves = []
    for name, size in measured:
        metric = {}
        for r in sorted(ratios):
            alone = MagnitudeConfig(sparsity=r, scope=Scope.LAYER, targets=(name,))
            pruned = magnitude_prune(copy.deepcopy(model), alone)
            metric[r] = evaluate(pruned)
        curves.append(LayerSensitivity(name, size, baseline, metric))
        if on_layer is not None:
            on_layer(name)
    return curves


def allocate_for(
    model: nn.Module, config: MagnitudeConfig, data: DataBundle, progress: Progress = SILENT
) -> tuple[MagnitudeConfig, str]:
    """``scope: sensitivity`` resolved: each layer measured alone on the validation split, and
    the per-layer sparsities that reach ``config.sparsity`` with the least loss as overrides."""

    def evaluate(m: nn.Module) -> float:
        return accuracy(*predict(lambda x: m(*x), data.val.batches(256)))

    with progress.task("sensitivity analysis", total=len(prunable_layers(model))) as task:
        curves = layer_sensitivity(model, evaluate, on_layer=lambda _: task.advance())
    allocation = allocate(curves, config.sparsity)
    shown = ", ".join(f"{n} {r:.0%}" for n, r in allocation.items())
    resolved = config.model_copy(update={"scope": Scope.LAYER, "overrides": allocation})
    return resolved, f"sensitivity allocation for {config.sparsity:.0%} overall: {shown}"


def allocate(curves: Sequence[LayerSensitivity], target: float) -> dict[str, float]:
    """Per-layer sparsities whose mean weighted by the curves' sizes reaches ``target``, greedily
    cheapest first: a share of weights, or of MACs where the sizes are MACs."""
    total = sum(c.size for c in curves)
    levels = {c.layer: [0.0, *sorted(c.metric)] for c in curves}
    chosen = dict.fromkeys(levels, 0)  # index into each layer's levels
    by_name = {c.layer: c for c in curves}

    def removed() -> float:
        return sum(by_name[n].size * levels[n][i] for n, i in chosen.items())

    while removed() < target * total:
        options = []
        for name, i in chosen.items():
            # a layer of size 0 (a MAC count of a layer that never runs) removes nothing
            if i + 1 < len(levels[name]) and by_name[name].size:
                c = by_name[name]
                lo, hi = levels[name][i], levels[name][i + 1]
                cost = max(0.0, c.drop(hi) - c.drop(lo)) / ((hi - lo) * c.size)
                options.append((cost, -c.size, name))
        if not options:
            top = max(max(lv) for lv in levels.values())
            raise StepError(
                f"Overall sparsity {target:.0%} is out of reach with per-layer sparsities up to "
                f"{top:.0%}; add higher sensitivity ratios or lower the target."
            )
        chosen[min(options)[2]] += 1
    return {n: levels[n][i] for n, i in chosen.items()}


def table(curves: Sequence[LayerSensitivity], allocation: dict[str, float] | None = None) -> str:
    """A markdown table: each layer's weights, metric drop at each ratio, and its allocation."""
    ratios = sorted(curves[0].metric) if curves else []
    head = ["layer", "weights", *(f"drop @{r:.0%}" for r in ratios)]
    head += ["allocated"] if allocation else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in curves:
        row = [c.layer, f"{c.size:,}", *(f"{c.drop(r):+.2f}" for r in ratios)]
        row += [f"{allocation[c.layer]:.0%}"] if allocation else []
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot(curves: Sequence[LayerSensitivity], path: Path, metric_name: str = "accuracy") -> Path:
    """Metric against sparsity, one line per layer, saved as PNG (headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for c in curves:
        xs = [0.0, *sorted(c.metric)]
        ax.plot(
            xs,
            [c.baseline, *(c.metric[r] for r in sorted(c.metric))],
            marker="o",
            ms=3,
            label=f"{c.layer} ({c.size:,})",
        )
    ax.set_xlabel("sparsity of this layer alone")
    ax.set_ylabel(f"validation {metric_name} (%)")
    ax.set_title("Per-layer pruning sensitivity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
