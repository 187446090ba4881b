"""The Pareto front of a search: trials no other trial beats on every axis at once."""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` on every axis and better on one (lower is better)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def pareto_front(points: Sequence[Sequence[float]]) -> list[bool]:
    """For each point (all axes to minimise), whether no other point dominates it.

    >>> pareto_front([(1, 3), (2, 2), (3, 1), (3, 3), (2, 2)])
    [True, True, True, False, True]
    """
    return [not any(dominates(q, p) for q in points) for p in points]
