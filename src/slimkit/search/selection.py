"""Choosing among finished trials: the trial table with its Pareto front, the best trial within
the accuracy budget (ties broken by size or speed), and the verdict in words."""

from __future__ import annotations

from typing import Any

from slimkit.results import points
from slimkit.search.config import AutoConfig, Objective
from slimkit.search.pareto import pareto_front
from slimkit.timing import SLOWER_MARGIN


def trial_table(
    study: Any, retimed: dict[int, dict[str, float]] | None = None
) -> list[dict[str, Any]]:
    """Every trial as a plain record, Pareto membership marked (accuracy up, latency and size
    down, over the trials that finished). A re-timed trial carries its new figures, and the
    search's under ``timed_in_search``."""
    rows = []
    for t in study.trials:
        row = {
            "number": t.number,
            "state": t.state.name,
            "params": dict(t.params),
            "objective": t.value if t.value is not None else None,
            **t.user_attrs,
        }
        again = (retimed or {}).get(t.number)
        if again:
            row["timed_in_search"] = {k: row[k] for k in again}
            row.update(again)
        rows.append(row)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    points = [(-r["accuracy"], 1.0 / r["speedup"], r["size_bytes"]) for r in complete]
    for r, on_front in zip(complete, pareto_front(points), strict=True):
        r["pareto"] = on_front
    return rows


# What decides between trials tied on the objective: the other half of the result.
_TIEBREAK = {
    Objective.LATENCY: "size_bytes",
    Objective.SIZE: "latency_ms",
    Objective.MACS: "latency_ms",
}


def choose(
    trials: list[dict[str, Any]], config: AutoConfig, base_accuracy: float
) -> tuple[dict[str, Any] | None, bool, str]:
    """The best finished trial within budget; else the most accurate one, and why.

    Trials within ``SLOWER_MARGIN`` (5%) of the best objective are tied, as a step within it
    is no faster when it is timed: of those, the smaller (under ``latency``) or the faster
    (under ``size`` and ``macs``) wins, then the more accurate.
    """
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    feasible = [t for t in complete if t["constraint"] <= 1e-9]
    if feasible:
        top = min(t["objective"] for t in feasible)
        tied = [t for t in feasible if t["objective"] <= top * SLOWER_MARGIN]
        best = min(tied, key=lambda t: (t[_TIEBREAK[config.objective]], -t["accuracy"]))
        return (
            best,
            True,
            (
                f"trial {best['number']}: {best['speedup']:.2f}x faster, "
                f"{best['compression']:.2f}x smaller, {points(best['accuracy_drop'])} "
                f"(budget {config.max_accuracy_drop:g}), of {len(complete)} finished trials"
            ),
        )
    if not complete:
        return (
            None,
            False,
            (
                f"No trial finished ({len(trials)} started); the baseline is reported as is. "
                "Raise --trials or --time-budget."
            ),
        )
    best = max(complete, key=lambda t: t["accuracy"])
    return (
        best,
        False,
        (
            f"No trial kept accuracy within {config.max_accuracy_drop:g} points of the baseline "
            f"({base_accuracy:.2f}%); the most accurate, trial {best['number']}, lost "
            f"{best['accuracy_drop']:.2f}. Raise --max-accuracy-drop, or --trials / --time-budget."
        ),
    )


def final_message(
    results: dict[str, Any], chosen: dict[str, Any] | None, search_message: str
) -> str:
    """The verdict as the final run measured it; the search's own figures came from trials
    timed at their own moments, so they are quoted only as such."""
    if chosen is None:
        return search_message
    s = results["summary"]
    return (
        f"trial {chosen['number']}, run again: {s['speedup']:.2f}x faster, "
        f"{s['compression']:.2f}x smaller, {points(s['accuracy_drop'])} vs the baseline "
        f"(the search measured {chosen['speedup']:.2f}x faster). Search: {search_message}"
    )
