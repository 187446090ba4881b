"""Shared by the benchmark scripts: machine facts, the JSON convention, the printed table.

Every ``benchmarks/<area>.py`` prints a table and, with ``--json PATH``, writes::

    {"machine": {"cpu", "threads", "versions"}, "run_s",
     "rows": [{"workload", "method", "runtime", "accuracy", "accuracy_drop", "latency_ms",
               "speedup", "size_bytes", "compression", "wall_s"}]}

with speedup and compression as ratios against the workload's fp32 baseline measured in the same
run, accuracy_drop in points, and ``vs_fastest_anchor`` the speedup over the fastest anchor (an
unmodified baseline served by another tool with its defaults: ONNX Runtime, torchao, OpenVINO,
OpenVINO + NNCF) timed in the same sessions. ``run_s`` is the script's own wall time, so the
scripts of one workload add up to the time its whole benchmark takes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from slimkit.rundir import environment

COLUMNS = [
    "workload",
    "method",
    "runtime",
    "accuracy",
    "accuracy_drop",
    "latency_ms",
    "speedup",
    "size_bytes",
    "compression",
    "vs_fastest_anchor",
    "wall_s",
]


STARTED = time.perf_counter()  # every script imports this module before its work begins


def run_seconds() -> float:
    """The script's wall time so far."""
    return round(time.perf_counter() - STARTED, 1)


WORKLOADS = ("W1", "W2", "W3")  # digits, text, solar-cell inspection (README, "Benchmarks")


def parser(description: str, workloads: bool = False) -> argparse.ArgumentParser:
    """The options every benchmark takes; ``workloads`` adds ``--workloads``, read back by
    :func:`chosen_workloads`."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--quick", action="store_true", help="reduced run for smoke tests")
    p.add_argument("--repeats", type=int, default=5, help="timing sessions; medians are quoted")
    if workloads:
        names = ", ".join(WORKLOADS)
        p.add_argument("--workloads", help=f"comma-separated: {names} (all; W1 with --quick)")
    return p


def chosen_workloads(cli: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The workloads ``--workloads`` names (all of them, or W1 alone with ``--quick``); an
    unknown name ends the run with the known ones."""
    chosen = (args.workloads or ("W1" if args.quick else ",".join(WORKLOADS))).split(",")
    if unknown := set(chosen) - set(WORKLOADS):
        cli.error(
            f"unknown workload(s) {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}"
        )
    return chosen


def machine(threads: int) -> dict[str, Any]:
    env = environment(threads)
    return {"cpu": env["cpu"], "threads": threads, "versions": env["versions"]}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def print_table(
    title: str,
    rows: list[dict[str, Any]],
    console: Console | None = None,
    columns: list[str] = COLUMNS,
) -> None:
    table = Table(title=title, title_justify="left")
    for c in columns:
        left = c in ("workload", "experiment", "method", "runtime")
        table.add_column(c, justify="left" if left else "right")
    for r in rows:
        table.add_row(*[_fmt(c, r.get(c)) for c in columns])
    (console or Console(width=160)).print(table)


def _fmt(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column in (
        "speedup",
        "compression",
        "teacher_speedup",
        "speedup_vs_fastest_baseline",
        "vs_fastest_anchor",
    ):
        return f"{value:.2f}x"
    if column == "size_bytes":
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3f}" if column == "latency_ms" else f"{value:.2f}"
    return str(value)


def write_json(
    path: Path | None, machine_info: dict[str, Any], rows: list[dict[str, Any]], **extra: Any
) -> None:
    """Write the JSON at ``path`` (nowhere without one), with the script's wall time so far."""
    if path is None:
        return
    found = {"machine": machine_info, "run_s": run_seconds(), "rows": rows, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found, indent=2) + "\n")


Checks = dict[str, tuple[bool | None, str]]


def finish(path: Path | None, threads: int, rows: list[dict[str, Any]], checks: Checks) -> None:
    """Print each target as PASS / FAIL / N/A and the run's wall time, and write the JSON
    (targets included)."""
    for name, (ok, text) in checks.items():
        print(f"{'PASS' if ok else 'FAIL' if ok is False else 'N/A '} {name}: {text}")
    print(f"ran {run_seconds() / 60:.1f} min")
    write_json(
        path,
        machine(threads),
        rows,
        targets={k: {"pass": ok, "detail": t} for k, (ok, t) in checks.items()},
    )


# --quick runs an image workload at this side and its baseline for one epoch: the plumbing of
# a real-size network in minutes rather than hours, not its figures.
TOY_IMAGE_SIZE = 32


def shipped_recipe(recipe_name: str, quick: bool = False) -> Any:
    """A recipe shipped in slimkit; with ``quick``, an image workload at toy scale (its images
    at :data:`TOY_IMAGE_SIZE` px, its baseline trained for one epoch)."""
    from importlib import resources

    from slimkit.recipe import Recipe

    with resources.as_file(resources.files("slimkit") / "recipes" / recipe_name) as path:
        recipe = Recipe.load(path)
    if not quick or recipe.data.image_size is None:
        return recipe
    toy = recipe.to_dict()
    toy["data"]["image_size"] = TOY_IMAGE_SIZE
    if recipe.baseline.train is not None:
        toy["baseline"]["train"]["epochs"] = 1
    return Recipe.from_dict(toy)


def shipped_baseline(recipe_name: str, quick: bool = False) -> tuple[Any, Any]:
    """``(recipe, baseline)`` of :func:`shipped_recipe` (trained once, then cached)."""
    from slimkit.baseline import prepare_baseline

    recipe = shipped_recipe(recipe_name, quick)
    return recipe, prepare_baseline(recipe)


def median_p50(
    engines: dict[str, Any],
    inputs: Any,
    *,
    repeats: int,
    rounds: int,
    per_round: int = 5,
    warmup: int = 5,
) -> dict[str, float]:
    """Median over ``repeats`` interleaved timing sessions of each engine's p50, in ms."""
    from slimkit.evaluation import measure_latency

    p50s: dict[str, list[float]] = {n: [] for n in engines}
    for _ in range(repeats):
        stats = measure_latency(engines, inputs, warmup=warmup, rounds=rounds, per_round=per_round)
        for n, s in stats.items():
            p50s[n].append(s.p50)
    return {n: median(v) for n, v in p50s.items()}


def row(
    workload: str,
    method: str,
    runtime: str,
    *,
    accuracy: float,
    base_accuracy: float,
    latency: float,
    base_latency: float,
    size: int,
    base_size: int,
    wall: float,
    **extra: Any,
) -> dict[str, Any]:
    """One row of the benchmark JSON convention (ratios against the workload's fp32 baseline)."""
    return {
        "workload": workload,
        "method": method,
        "runtime": runtime,
        "accuracy": round(accuracy, 2),
        "accuracy_drop": round(base_accuracy - accuracy, 2),
        "latency_ms": round(latency, 4),
        "speedup": round(base_latency / latency, 3),
        "size_bytes": size,
        "compression": round(base_size / size, 3),
        "wall_s": round(wall, 2),
        **extra,
    }


def openvino_anchors(
    model: Any, data: Any, calibration: list, work: Path
) -> dict[str, tuple[Any, Any, float]]:
    """OpenVINO as a user runs it without slimkit, on the unmodified baseline:
    ``openvino.convert_model`` of the ONNX export saved with ``save_model``'s defaults and
    compiled with the CPU plugin's (bf16 inference on CPUs that have it), and ``nncf.quantize``
    with its defaults on the calibration batches (``ModelType.TRANSFORMER`` for a text model,
    as NNCF's guide prescribes). ``{name: (state, model, wall seconds)}``."""
    import nncf
    import openvino as ov

    from slimkit.export import export_onnx
    from slimkit.state import ModelState

    start = time.perf_counter()
    exported = export_onnx(model, data.sample_inputs(8), data.input_names, work / "ov-anchor.onnx")
    ov_model = ov.convert_model(str(exported))
    ov.save_model(ov_model, str(work / "ov-fp32.xml"))
    converted = time.perf_counter() - start
    text = any(not x.is_floating_point() for x in data.sample_inputs(1))
    start = time.perf_counter()
    int8 = nncf.quantize(
        ov_model,
        nncf.Dataset(calibration, lambda batch: [x.numpy() for x in batch]),
        subset_size=sum(int(b[0].shape[0]) for b in calibration),
        model_type=nncf.ModelType.TRANSFORMER if text else None,
    )
    ov.save_model(int8, str(work / "ov-nncf-int8.xml"))
    quantized = time.perf_counter() - start
    return {
        "anchor:openvino:fp32": (
            ModelState(model, "openvino", artifact=work / "ov-fp32.xml"),
            model,
            converted,
        ),
        "anchor:openvino+nncf:int8": (
            ModelState(model, "openvino", artifact=work / "ov-nncf-int8.xml"),
            model,
            converted + quantized,
        ),
    }


def against_fastest_anchor(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with ``vs_fastest_anchor``: the fastest anchor's latency over its own."""
    anchors = [r["latency_ms"] for r in rows if r["method"].startswith("anchor:")]
    if not anchors:
        return rows
    fastest = min(anchors)
    return [{**r, "vs_fastest_anchor": round(fastest / r["latency_ms"], 3)} for r in rows]
