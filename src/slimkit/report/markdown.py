"""``report.md``: the steps table, the summary, notes and the environment, from results.json."""

from __future__ import annotations

from typing import Any


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def step_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row of formatted cells per step, then per reference (the baseline on another
    runtime), with ratios against the baseline (first step)."""
    steps = results["steps"]
    base = steps[0]
    rows = []
    for s in [*steps, *results.get("references", [])]:
        p50 = s["latency_ms"]["p50"]
        rows.append(
            [
                s["name"],
                s["kind"],
                s["runtime"],
                f"{s['accuracy']:.2f}",
                f"{s['accuracy'] - base['accuracy']:+.2f}",
                human_count(s["params"]),
                f"{100 * (1 - s['nonzero_params'] / s['params']):.1f}%",
                human_bytes(s["size_bytes"]),
                human_count(s["macs"]),
                f"{p50:.3f}",
                f"{s['latency_ms']['p90']:.3f}",
                f"{s['throughput']:.0f}",
                f"{base['latency_ms']['p50'] / p50:.2f}x",
                f"{base['size_bytes'] / s['size_bytes']:.2f}x",
            ]
        )
    return rows


# The terminal table keeps the columns that fit 80 characters; report.md has them all.
COMPACT = ["step", "runtime", "acc %", "Δ pts", "size", "p50 ms", "speedup", "smaller"]

HEADERS = [
    "step",
    "kind",
    "runtime",
    "acc %",
    "Δ pts",
    "params",
    "sparsity",
    "size",
    "MACs",
    "p50 ms",
    "p90 ms",
    "ex/s",
    "speedup",
    "smaller",
]


def fastest_line(results: dict[str, Any]) -> list[str]:
    """The final model against the baseline on its fastest runtime, when a reference is it."""
    summary = results["summary"]
    fastest = summary.get("fastest_baseline")
    if not results.get("references") or fastest is None:
        return []
    runtime = next(
        s["runtime"] for s in [*results["steps"], *results["references"]] if s["name"] == fastest
    )
    return [
        "",
        f"Against the baseline on its fastest runtime ({fastest}, on {runtime}): "
        f"{summary['speedup_vs_fastest_baseline']:.2f}x faster.",
    ]


def render_markdown(results: dict[str, Any]) -> str:
    summary = results["summary"]
    env = results["environment"]
    batch = results["steps"][0]["batch_size"]
    lines = [
        f"# slimkit run: {results['recipe']['name']}",
        "",
        f"**{summary['final']}** vs **{summary['baseline']}**: {summary['speedup']:.2f}x faster, "
        f"{summary['compression']:.2f}x smaller, accuracy {-summary['accuracy_drop']:+.2f} points.",
        *fastest_line(results),
        "",
        f"Latency per batch of {batch} on each step's runtime, {env['threads']} threads, "
        "all models timed interleaved in one process.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in step_rows(results)]
    if results.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in results["warnings"]]
    notes = [(s["name"], n) for s in results["steps"] for n in s["notes"]]
    if notes:
        lines += ["", "## Notes", ""] + [f"- **{name}**: {note}" for name, note in notes]
    lines += [
        "",
        "## Environment",
        "",
        f"- CPU: {env['cpu']} ({env['cpu_count']} logical cores, {env['threads']} threads used)",
        f"- Python {env['python']} on {env['platform']}",
        "- " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v),
        "",
    ]
    return "\n".join(lines)
