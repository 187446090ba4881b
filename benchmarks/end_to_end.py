"""End to end: ``slimkit auto`` on W1 and W2 beside the best single-technique anchors.

For each workload, in one process: the shipped recipe's baseline; ``slimkit auto`` with an
accuracy budget of 1 point and a time budget; and the anchors run plainly with their tools'
defaults (ONNX Runtime int8, torchao ``quantize_`` int8, torch-pruning 50% channels with the
same fine-tuning). Speedups are against the fp32 baseline timed interleaved in the same session
(auto's final model in its own final run). The machine's fp32 and int8 matrix-multiply peaks are
measured in the same process, and each model's efficiency is its MACs per second as a share of
the peak of the precision it computes in.

    python benchmarks/end_to_end.py --json bench-results/end_to_end.json --w1-minutes 30
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import COLUMNS as BASE_COLUMNS
from _common import finish, median_p50, parser, print_table, row, shipped_baseline
from slimkit._console import quiet_libraries

COLUMNS = [*BASE_COLUMNS[:-1], "efficiency_pct", "wall_s"]
PLANS = {"W1": "demo.yaml", "W2": "minilm-bbc.yaml"}


def matmul_peaks(threads: int, size: int = 1024, repeats: int = 10) -> dict[str, float]:
    """Multiply-accumulates per second of a large fp32 and int8 (int32-accumulating) matmul."""
    torch.set_num_threads(threads)
    out = {}
    for name, make, mm in (
        ("fp32", lambda: torch.randn(size, size), torch.mm),
        (
            "int8",
            lambda: torch.randint(-128, 127, (size, size), dtype=torch.int8),
            torch._int_mm,
        ),
    ):
        a, b = make(), make()
        for _ in range(3):
            mm(a, b)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            mm(a, b)
            times.append(time.perf_counter() - start)
        out[name] = size**3 / statistics.median(times)
    return out


def efficiency(macs: int, batch: int, latency_ms: float, peak: float) -> float:
    return round(100.0 * macs * batch / (latency_ms / 1000.0) / peak, 2)


def run_workload(
    workload: str, minutes: float, trials: int, repeats: int, threads: int, peaks: dict[str, float]
) -> list[dict[str, Any]]:
    from slimkit.search import AutoConfig, auto

    recipe, base = shipped_baseline(PLANS[workload])
    batch = recipe.evaluation.batch_size
    rows = anchor_rows(workload, recipe, base, repeats, threads, peaks)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        config = AutoConfig(max_accuracy_drop=1.0, time_budget_min=minutes, trials=trials)
        result = auto(recipe, config, Path(tmp) / "auto")
        wall = time.perf_counter() - start
    steps = result.results["steps"]
    first, last = steps[0], steps[-1]
    int8 = any("int8" in str(s) for s in result.results["recipe"]["steps"])
    rows.append(
        row(
            workload,
            f"slimkit auto ({len(result.results['search']['trials'])} trials)",
            last["backend"],
            accuracy=last["accuracy"],
            base_accuracy=first["accuracy"],
            latency=last["latency_ms"]["p50"],
            base_latency=first["latency_ms"]["p50"],
            size=last["size_bytes"],
            base_size=first["size_bytes"],
            wall=wall,
            efficiency_pct=efficiency(
                last["macs"], batch, last["latency_ms"]["p50"], peaks["int8" if int8 else "fp32"]
            ),
            recipe=result.results["recipe"]["steps"],
            message=result.message,
        )
    )
    return rows


def anchor_rows(
    workload: str, recipe: Any, base: Any, repeats: int, threads: int, peaks: dict[str, float]
) -> list[dict[str, Any]]:
    """The baseline and each anchor, timed interleaved in one session."""
    from pruning import W1_FINETUNE, apply
    from quantization import anchors
    from slimkit.evaluation import count_macs
    from slimkit.evaluation.metrics import accuracy, predict
    from slimkit.runtimes import prepare
    from slimkit.state import ModelState
    from slimkit.training import TrainConfig, train

    data, batch = base.data, recipe.evaluation.batch_size
    calibration = [x for x, _ in data.calibration(512).batches(32)]
    entries: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)

        def add(
            name: str, state: ModelState, model: torch.nn.Module, wall: float, peak: str
        ) -> None:
            prepared = prepare(
                state,
                work / f"served-{len(entries)}",
                input_names=data.input_names,
                sample_inputs=data.sample_inputs(batch),
                threads=threads,
                arch=base.arch,
            )
            entries[name] = {
                "backend": state.backend,
                "engine": prepared.engine,
                "accuracy": accuracy(*predict(prepared.engine, data.test.batches(64))),
                "size": prepared.artifact.stat().st_size,
                "macs": count_macs(model, data.sample_inputs(1)),
                "wall": wall,
                "peak": peak,
            }

        add("fp32 baseline", ModelState(base.model, "eager"), base.model, 0.0, "fp32")
        for name, (state, model, wall) in anchors(base.model, data, calibration, work).items():
            add(name, state, model, wall, "int8")
        if workload == "W1":
            start = time.perf_counter()
            pruned, _ = apply(("tp", 0.5), base.model, data, None)
            train(pruned, data, TrainConfig.from_dict(W1_FINETUNE))
            add(
                "anchor:torch-pruning:MetaPruner-50%+finetune",
                ModelState(pruned, "eager"),
                pruned,
                time.perf_counter() - start,
                "fp32",
            )
        lat = median_p50(
            {n: e["engine"] for n, e in entries.items()},
            data.sample_inputs(batch),
            repeats=repeats,
            rounds=10,
        )
    base_entry = entries["fp32 baseline"]
    return [
        row(
            workload,
            name,
            e["backend"],
            accuracy=e["accuracy"],
            base_accuracy=base_entry["accuracy"],
            latency=lat[name],
            base_latency=lat["fp32 baseline"],
            size=e["size"],
            base_size=base_entry["size"],
            wall=e["wall"],
            efficiency_pct=efficiency(e["macs"], batch, lat[name], peaks[e["peak"]]),
        )
        for name, e in entries.items()
    ]


TARGETS = {"W1": (20.0, 20.0), "W2": (10.0, 8.0)}


def targets(
    rows: list[dict[str, Any]], minutes: dict[str, float]
) -> dict[str, tuple[bool | None, str]]:
    checks: dict[str, tuple[bool | None, str]] = {}
    for r in rows:
        if not r["method"].startswith("slimkit auto"):
            continue
        faster, smaller = TARGETS[r["workload"]]
        checks[
            f"{r['workload']} auto >= {faster:g}x faster, >= {smaller:g}x smaller, <= 1 pt, "
            f"in {minutes[r['workload']]:g} min"
        ] = (
            r["speedup"] >= faster and r["compression"] >= smaller and r["accuracy_drop"] <= 1.0,
            f"{r['speedup']:.2f}x faster, {r['compression']:.2f}x smaller, "
            f"{r['accuracy_drop']:.2f} points lost, {r['wall_s'] / 60:.1f} min",
        )
        checks[f"{r['workload']} auto reaches >= 40% of the measured peak"] = (
            r["efficiency_pct"] >= 40.0,
            f"{r['efficiency_pct']:.2f}% of the peak",
        )
    return checks


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--workloads", default="W1,W2", help="comma-separated: W1, W2")
    p.add_argument("--w1-minutes", type=float, default=30.0, help="W1 search budget")
    p.add_argument("--w2-minutes", type=float, default=60.0, help="W2 search budget")
    p.add_argument(
        "--trials", type=int, default=200, help="trial cap (the budget usually ends first)"
    )
    args = p.parse_args()
    quiet_libraries()
    threads = torch.get_num_threads()
    peaks = matmul_peaks(threads)
    print(
        f"matmul peak: fp32 {peaks['fp32'] / 1e9:.1f} GMAC/s, int8 {peaks['int8'] / 1e9:.1f} GMAC/s"
    )
    minutes = {"W1": args.w1_minutes, "W2": args.w2_minutes}
    if args.quick:
        minutes = {"W1": 1.0, "W2": 2.0}
    rows: list[dict[str, Any]] = []
    for workload in args.workloads.split(","):
        found = run_workload(
            workload,
            minutes[workload],
            2 if args.quick else args.trials,
            1 if args.quick else args.repeats,
            threads,
            peaks,
        )
        rows += found
        print_table(f"{workload} end to end ({threads} threads)", found, columns=COLUMNS)
    checks = targets(rows, minutes)
    finish(args.json, threads, rows, checks)


if __name__ == "__main__":
    main()
