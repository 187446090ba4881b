"""The report's figures, drawn from results.json alone (headless matplotlib, PNG bytes).

Each plot function takes the results (and, for a search, its trials) and returns PNG bytes, so
the HTML report can embed them and open offline.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

from slimkit.registry import Registry

Plot = Callable[[dict[str, Any]], bytes | None]
PLOTS: Registry[Plot] = Registry("report plot")


def _figure(width: float = 7.0, height: float = 4.0) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=110)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _bars(
    names: Sequence[str], values: Sequence[float], labels: Sequence[str], ylabel: str
) -> bytes:
    fig, ax = _figure()
    bars = ax.bar(range(len(names)), values, color="#4477aa")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.bar_label(bars, labels=labels, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


@PLOTS.register("latency")
def latency(results: dict[str, Any]) -> bytes | None:
    """p50 latency of each step on the runtime that serves it."""
    steps = results["steps"]
    names = [f"{s['name']}\n({s['runtime']})" for s in steps]
    p50 = [s["latency_ms"]["p50"] for s in steps]
    return _bars(names, p50, [f"{v:.3g} ms" for v in p50], "p50 latency per batch (ms)")


@PLOTS.register("size")
def size(results: dict[str, Any]) -> bytes | None:
    """Size on disk of what each step's runtime loads."""
    steps = results["steps"]
    kb = [s["size_bytes"] / 1024 for s in steps]
    return _bars([s["name"] for s in steps], kb, [f"{v:,.0f} KB" for v in kb], "size on disk (KB)")


@PLOTS.register("size-by-layer-type")
def size_by_layer_type(results: dict[str, Any]) -> bytes | None:
    """Each step's parameter bytes split by the type of layer that holds them."""
    steps = [s for s in results["steps"] if s.get("bytes_by_layer_type")]
    if not steps:
        return None
    kinds = sorted({k for s in steps for k in s["bytes_by_layer_type"]})
    fig, ax = _figure()
    bottom = [0.0] * len(steps)
    for kind in kinds:
        values = [s["bytes_by_layer_type"].get(kind, 0) / 1024 for s in steps]
        ax.bar(range(len(steps)), values, bottom=bottom, label=kind)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(range(len(steps)), [s["name"] for s in steps], rotation=20, ha="right")
    ax.set_ylabel("parameter bytes (KB), as the PyTorch module holds them")
    ax.legend(fontsize=8)
    return _png(fig)


@PLOTS.register("pareto")
def pareto(results: dict[str, Any]) -> bytes | None:
    """A search's trials: accuracy against latency, the Pareto front joined, size as area."""
    trials = [t for t in results.get("search", {}).get("trials", []) if t.get("latency_ms")]
    if not trials:
        return None
    fig, ax = _figure()
    sizes = [max(t["size_bytes"] / 2048, 8) for t in trials]
    ax.scatter(
        [t["latency_ms"] for t in trials],
        [t["accuracy"] for t in trials],
        s=sizes,
        alpha=0.5,
        color="#999999",
        label="trial (area: size on disk)",
    )
    front = sorted((t for t in trials if t.get("pareto")), key=lambda t: t["latency_ms"])
    ax.plot(
        [t["latency_ms"] for t in front],
        [t["accuracy"] for t in front],
        "o-",
        color="#cc3311",
        label="Pareto front",
    )
    base = results["steps"][0]
    ax.axhline(base["accuracy"], color="#4477aa", ls="--", lw=1, label="baseline accuracy")
    floor = results["search"].get("accuracy_floor")
    if floor is not None:
        ax.axhline(floor, color="#cc3311", ls=":", lw=1, label="accuracy budget")
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per batch (ms, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


@PLOTS.register("sensitivity")
def sensitivity(results: dict[str, Any]) -> bytes | None:
    """Per-layer sensitivity from a search: accuracy drop with only that layer pruned."""
    curves = results.get("search", {}).get("sensitivity")
    if not curves:
        return None
    fig, ax = _figure(7.0, 4.5)
    for layer, points in curves.items():
        ratios = sorted(points, key=float)
        ax.plot(
            [0.0, *map(float, ratios)], [0.0, *(points[r] for r in ratios)], marker="o", label=layer
        )
    ax.set_xlabel("share of the layer's weights pruned")
    ax.set_ylabel("accuracy drop (points)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _png(fig)


def render_plots(results: dict[str, Any]) -> dict[str, bytes]:
    """Every registered plot that has data in ``results``, by name."""
    out = {}
    for name in PLOTS.list():
        png = PLOTS.get(name)(results)
        if png is not None:
            out[name] = png
    return out
