"""The per-step record and ``results.json``, slimkit's stable output contract.

``results.json``::

    {
      "slimkit_version": "0.1.0",
      "recipe": {...},                      # the resolved recipe, as run
      "steps": [{                           # the baseline first, then each step in order
        "name", "kind",                     # "baseline"/"baseline", or the step's name and type
        "accuracy",                         # % on the test split
        "latency_ms": {"p50", "p90"},       # per batch, on "runtime", at "batch_size"
        "throughput",                       # examples / s at the median latency
        "batch_size", "runtime",
        "params", "nonzero_params",         # parameter count; those not exactly zero
        "size_bytes",                       # size on disk of "artifact"
        "bytes_by_layer_type",              # {"Conv2d": ..., "other": ...}: its stored tensors
        "macs",                             # multiply-accumulates per example
        "artifact",                         # path relative to the run directory
        "metrics", "wall_s", "notes"        # all metrics; step time; warnings and facts
      }],
      "references": [...],                  # the baseline on evaluation.baseline_runtimes
                                            # (kind "reference"), same fields as a step
      "summary": {"baseline", "final",      # step names
                  "speedup", "compression", # baseline / final latency p50 and size_bytes
                  "accuracy_drop",          # baseline - final accuracy, in points
                  "fastest_baseline",       # the baseline or reference with the lowest p50
                  "speedup_vs_fastest_baseline"},
      "environment": {...},
      "warnings": [...]                     # run-wide, e.g. a busy machine during timing
    }
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from slimkit.config import describe_validation_error
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
        "runtime": m.state.runtime,
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


def summarize(
    steps: list[dict[str, Any]], references: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Final step against the baseline: ratios (>1 is better) and points of accuracy lost; and
    against the fastest way of serving the baseline (itself, or a reference)."""
    base, final = steps[0], steps[-1]
    fastest = min([base, *(references or [])], key=lambda s: s["latency_ms"]["p50"])
    return {
        "baseline": base["name"],
        "final": final["name"],
        "speedup": base["latency_ms"]["p50"] / final["latency_ms"]["p50"],
        "compression": base["size_bytes"] / final["size_bytes"],
        "accuracy_drop": round(base["accuracy"] - final["accuracy"], 4),
        "fastest_baseline": fastest["name"],
        "speedup_vs_fastest_baseline": fastest["latency_ms"]["p50"] / final["latency_ms"]["p50"],
    }


def points(drop: float) -> str:
    """An accuracy drop in words: ``0.84 points lost``, ``0.84 points gained``."""
    return f"{abs(drop):.2f} points {'lost' if drop > 0 else 'gained' if drop < 0 else 'changed'}"


def build_results(
    recipe: dict[str, Any],
    measurements: list[Measurement],
    run_dir: Path,
    env: dict[str, Any],
    references: Sequence[Measurement] = (),
) -> dict[str, Any]:
    steps = [step_dict(m, run_dir) for m in measurements]
    refs = [step_dict(m, run_dir) for m in references]
    return {
        "slimkit_version": metadata.version("slimkit"),
        "recipe": recipe,
        "steps": steps,
        "references": refs,
        "summary": summarize(steps, refs),
        "environment": env,
    }


class _Record(BaseModel):
    """Base of the checked shape of ``results.json``: types enforced, other keys kept."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class _Latency(_Record):
    p50: float = Field(gt=0)
    p90: float = Field(ge=0)


class _Step(_Record):
    name: str
    kind: str
    accuracy: float
    latency_ms: _Latency
    throughput: float = Field(ge=0)
    batch_size: int = Field(ge=1)
    # older results.json files call it "backend"
    runtime: str = Field(validation_alias=AliasChoices("runtime", "backend"))
    params: int = Field(ge=1)
    nonzero_params: int = Field(ge=0)
    size_bytes: int = Field(ge=1)
    bytes_by_layer_type: dict[str, float] = {}
    macs: int = Field(ge=0)
    artifact: str
    metrics: dict[str, float] = {}
    wall_s: float = Field(ge=0)
    notes: list[str] = []


class _Summary(_Record):
    baseline: str
    final: str
    speedup: float = Field(gt=0)
    compression: float = Field(gt=0)
    accuracy_drop: float
    # absent from results written before baselines were served on other runtimes
    fastest_baseline: str | None = None
    speedup_vs_fastest_baseline: float | None = Field(None, gt=0)


class _Environment(_Record):
    cpu: str
    cpu_count: int | None
    threads: int
    python: str
    platform: str
    versions: dict[str, str | None]


class _RecipeName(_Record):
    name: str


class _Retimed(_Record):
    latency_ms: float


class _Trial(_Record):
    number: int
    state: str
    params: dict[str, str | int | float | bool | None]
    accuracy: float | None = None
    latency_ms: float | None = None
    timed_in_search: _Retimed | None = None
    size_bytes: int | None = None
    pareto: bool = False
    notes: list[str] = []


class _Search(_Record):
    message: str = ""
    trials: list[_Trial]


class _Results(_Record):
    recipe: _RecipeName
    steps: list[_Step] = Field(min_length=1)
    references: list[_Step] = []
    summary: _Summary
    environment: _Environment
    warnings: list[str] = []
    search: _Search | None = None


# Far above any real run's results; reading a larger file is not worth the memory.
_MAX_BYTES = 64 << 20


def load_results(run_dir: Path) -> dict[str, Any]:
    """The ``results.json`` of a run directory, checked to have the shape slimkit writes (every
    field the reports read, with its type), so that a damaged or hand-edited file is refused in
    words instead of failing halfway through a report."""
    from slimkit.errors import RunDirError

    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise RunDirError(
            f"{str(run_dir)!r} is not a slimkit run directory: it has no results.json."
        )
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise RunDirError(f"{path} is larger than {_MAX_BYTES >> 20} MiB: not slimkit results.")
        raw = json.loads(path.read_text(encoding="utf-8"))
        results = _Results.model_validate(raw).model_dump()
        if results["search"] is None:  # a plain run has no search section at all
            del results["search"]
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path} is not valid JSON ({err}); was the run interrupted?") from None
    except RecursionError:
        raise RunDirError(f"{path} nests its values too deeply to be slimkit results.") from None
    except ValidationError as err:
        raise RunDirError(
            f"{path} does not have the shape slimkit writes: "
            + describe_validation_error(err, _Results, "results.json")
        ) from None
    return results
