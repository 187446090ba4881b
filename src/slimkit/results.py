"""The per-step record and ``results.json``, slimkit's stable output contract.

``results.json``::

    {
      "slimkit_version": "0.1.0",
      "recipe": {...},                      # the resolved recipe, as run
      "steps": [{                           # the baseline first, then each step in order
        "name", "kind",                     # "baseline"/"baseline", or the step's name and type
        "accuracy",                         # % on the test split
        "latency_ms": {"p50", "p90"},       # per batch, on "backend", at "batch_size"
        "throughput",                       # examples / s at the median latency
        "batch_size", "backend",
        "params", "nonzero_params",         # parameter count; those not exactly zero
        "size_bytes",                       # size on disk of "artifact"
        "bytes_by_layer_type",              # {"Conv2d": ..., "other": ...}: its stored tensors
        "macs",                             # multiply-accumulates per example
        "artifact",                         # path relative to the run directory
        "metrics", "wall_s", "notes"        # all metrics; step time; warnings and facts
      }],
      "summary": {"baseline", "final",      # step names
                  "speedup", "compression", # baseline / final latency p50 and size_bytes
                  "accuracy_drop"},         # baseline - final accuracy, in points
      "environment": {...},
      "warnings": [...]                     # run-wide, e.g. a busy machine during timing
    }
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

from slimkit.evaluation.evaluate import Measurement


def step_dict(m: Measurement, run_dir: Path) -> dict[str, Any]:
    """One entry of ``results.json``'s ``steps``."""
    lat = m.latency
    return {
        "name": m.name,
        "kind": m.kind,
        "accuracy": round(m.accuracy, 4),
        "latency_ms": {"p50": lat.p50, "p90": lat.p90} if lat else None,
        "throughput": lat.throughput if lat else None,
        "batch_size": lat.batch_size if lat else None,
        "backend": m.state.backend,
        "params": m.params,
        "nonzero_params": m.nonzero_params,
        "size_bytes": m.size_bytes,
        "bytes_by_layer_type": m.bytes_by_layer_type,
        "macs": m.macs,
        "artifact": str(m.prepared.artifact.relative_to(run_dir)),
        "metrics": {k: round(v, 4) for k, v in m.metrics.items()},
        "wall_s": round(m.wall_s, 3),
        "notes": m.notes,
    }


def summarize(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Final step against the baseline: ratios (>1 is better) and points of accuracy lost."""
    base, final = steps[0], steps[-1]
    return {
        "baseline": base["name"],
        "final": final["name"],
        "speedup": base["latency_ms"]["p50"] / final["latency_ms"]["p50"],
        "compression": base["size_bytes"] / final["size_bytes"],
        "accuracy_drop": round(base["accuracy"] - final["accuracy"], 4),
    }


def build_results(
    recipe: dict[str, Any], measurements: list[Measurement], run_dir: Path, env: dict[str, Any]
) -> dict[str, Any]:
    steps = [step_dict(m, run_dir) for m in measurements]
    return {
        "slimkit_version": metadata.version("slimkit"),
        "recipe": recipe,
        "steps": steps,
        "summary": summarize(steps),
        "environment": env,
    }


def load_results(run_dir: Path) -> dict[str, Any]:
    """The ``results.json`` of a run directory, checked to be one."""
    import json

    from slimkit.errors import RunDirError

    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise RunDirError(
            f"{str(run_dir)!r} is not a slimkit run directory: it has no results.json."
        )
    try:
        results: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path} is not valid JSON ({err}); was the run interrupted?") from None
    if not isinstance(results, dict) or not {"steps", "summary", "recipe"} <= set(results):
        raise RunDirError(f"{path} does not hold slimkit results (steps, summary, recipe).")
    return results
