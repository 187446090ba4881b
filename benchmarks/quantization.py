"""Benchmark every quantization mode x backend on W1, W2 and W3 beside plain anchors, one process.

W1 is the demo's residual net trained on mnist5k (batch 1); W2 is MiniLM-L6 fine-tuned on
bbc-news (batch 8); W3 is EfficientNet-Lite0 fine-tuned on elpv's solar cells (batch 1 and 32).
Fine-tuned models are cached by their recipes, so only the first run trains them.
Anchors are the tools run plainly with their defaults: ONNX Runtime ``quantize_static`` /
``quantize_dynamic``, torchao ``quantize_`` with ``Int8DynamicActivationInt8WeightConfig``
served by torch.compile, OpenVINO's ``convert_model`` of the fp32 model and NNCF's ``quantize``
of it (``vs_fastest_anchor`` compares each row with the fastest of them). Each workload's
models are timed together, interleaved, in ``--repeats`` sessions; the table quotes the median
p50. ``int8_peak_pct`` is a model's multiply-accumulates per second as a share of the machine's
int8 matmul peak, measured in the same process; the fastest int8 row of each workload and batch
carries its runtime's profile by operator type (``time_by_op``). ``--quick --workloads W3``
checks W3's plumbing at toy scale (32 px, one epoch, no torch.compile anchor).

    python benchmarks/quantization.py --json bench-results/quantization.json
"""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import COLUMNS as BASE_COLUMNS
from _common import (
    against_fastest_anchor,
    chosen_workloads,
    finish,
    median_p50,
    openvino_anchors,
    parser,
    print_table,
    row,
    shipped_baseline,
)
from _profile import (
    efficiency,
    macs_by_kind,
    matmul_peaks,
    time_by_op,
    time_by_op_openvino,
    why_below_peak,
)
from slimkit._console import quiet_libraries

COLUMNS = [*BASE_COLUMNS[:3], "batch_size", *BASE_COLUMNS[3:-1], "int8_peak_pct", "wall_s"]
W1_METHODS: list[dict[str, Any]] = [
    {"mode": "static-int8", "backend": "onnxruntime"},
    {"mode": "static-int8", "backend": "torchao"},
    {"mode": "static-int8", "backend": "openvino"},
    {"mode": "dynamic-int8", "backend": "onnxruntime"},
    {"mode": "qat", "backend": "torchao", "train": {"epochs": 1, "lr": 0.0001}},
    {"mode": "bf16", "backend": "torch"},
    {"mode": "fp16", "backend": "torch"},
    # 8 bits lose nothing on W1, so QAT has nothing to recover there; 3-bit weights (in int8
    # storage) make post-training quantization lose points, the case the QAT target is about.
    {"mode": "static-int8", "backend": "torchao", "weight_bits": 3},
    {"mode": "qat", "backend": "torchao", "weight_bits": 3, "train": {"epochs": 2, "lr": 0.0005}},
]
W2_METHODS: list[dict[str, Any]] = [
    {"mode": "dynamic-int8", "backend": "onnxruntime"},
    {"mode": "dynamic-int8", "backend": "torchao"},
    {"mode": "static-int8", "backend": "onnxruntime"},
    {"mode": "static-int8", "backend": "openvino"},
    {"mode": "weight-only-int8", "backend": "onnxruntime"},
    {"mode": "weight-only-int4", "backend": "onnxruntime"},
    {"mode": "weight-only-int4", "backend": "openvino"},
    {"mode": "bf16", "backend": "torch"},
    {"mode": "bf16", "backend": "openvino"},
]
W3_METHODS: list[dict[str, Any]] = [
    {"mode": "static-int8", "backend": "onnxruntime"},
    {"mode": "static-int8", "backend": "openvino"},
    {"mode": "static-int8", "backend": "torchao"},
    {"mode": "weight-only-int8", "backend": "onnxruntime"},
    {"mode": "bf16", "backend": "openvino"},
]
# workload -> (recipe, methods, batch sizes; None: the recipe's own)
WORKLOADS = {
    "W1": ("demo.yaml", W1_METHODS, None),
    "W2": ("minilm-bbc.yaml", W2_METHODS, None),
    "W3": ("lite0-elpv.yaml", W3_METHODS, (1, 32)),
}


def linear_weight_bytes(artifact: Path, model: torch.nn.Module) -> int:
    """Bytes the Linear/MatMul weights take in an artifact (ONNX: NBits or float initializers)."""
    if artifact.suffix != ".onnx":
        return sum(
            m.weight.numel() * m.weight.element_size()
            for m in model.modules()
            if isinstance(m, torch.nn.Linear)
        )
    import onnx

    graph = onnx.load(str(artifact)).graph
    sizes = {i.name: len(i.raw_data) or 4 * max(1, len(i.float_data)) for i in graph.initializer}
    total = 0
    for node in graph.node:
        if node.op_type == "MatMulNBits":
            total += sum(sizes.get(name, 0) for name in node.input[1:])
        elif node.op_type in ("MatMul", "Gemm") and node.input[1] in sizes:
            total += sizes[node.input[1]]
    return total


def main() -> None:
    cli = parser(__doc__.splitlines()[0], workloads=True)
    args = cli.parse_args()
    workloads = chosen_workloads(cli, args)
    quiet_libraries()
    threads = torch.get_num_threads()
    peak = matmul_peaks(threads)["int8"]
    rows: list[dict[str, Any]] = []
    checks: dict[str, tuple[bool | None, str]] = {}
    for workload in workloads:
        recipe_name, methods, batches = WORKLOADS[workload]
        found = run_workload(
            workload,
            recipe_name,
            methods,
            batches,
            quick=args.quick,
            repeats=1 if args.quick else args.repeats,
            threads=threads,
            peak=peak,
        )
        rows += found
        print_table(
            f"{workload} quantization ({threads} threads, median p50 of "
            f"{1 if args.quick else args.repeats} interleaved sessions)",
            found,
            columns=COLUMNS,
        )
        checks.update(targets(workload, found))
    finish(args.json, threads, rows, checks)


def run_workload(
    workload: str,
    recipe_name: str,
    methods: list[dict[str, Any]],
    batches: tuple[int, ...] | None,
    *,
    quick: bool,
    repeats: int,
    threads: int,
    peak: float,
) -> list[dict[str, Any]]:
    """Build every method's and anchor's model for one workload once, then serve and time them
    interleaved at each batch size (the recipe's own when ``batches`` is None)."""
    from slimkit.evaluation import count_macs
    from slimkit.evaluation.metrics import accuracy, predict
    from slimkit.evaluation.size import artifact_bytes
    from slimkit.quantization import QUANT_MODES, QatConfig, quantize
    from slimkit.quantization.inputs import qat_train_loop
    from slimkit.runtimes import prepare
    from slimkit.state import ModelState

    recipe, base = shipped_baseline(recipe_name, quick)
    data = base.data
    macs = count_macs(base.model, data.sample_inputs(1))
    kinds = macs_by_kind(base.model, data.sample_inputs(1))
    calibration = [x for x, _ in data.calibration(512).batches(32)]
    built: dict[str, tuple[ModelState, torch.nn.Module, float]] = {
        "fp32": (ModelState(base.model, "eager"), base.model, 0.0)
    }
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for spec in methods[:2] if quick else methods:
            config = QUANT_MODES.get(spec["mode"]).from_dict(spec)
            name = spec["mode"] + (
                "" if spec["backend"] == "onnxruntime" else f"@{spec['backend']}"
            )
            name += f"/w{spec['weight_bits']}" if "weight_bits" in spec else ""
            loop = None
            if isinstance(config, QatConfig):
                loop = qat_train_loop(config, data, copy.deepcopy(base.model))
            start = time.perf_counter()
            result = quantize(
                copy.deepcopy(base.model),
                config,
                example_inputs=data.sample_inputs(8),
                input_names=data.input_names,
                out_path=work / f"q{len(built)}.onnx",
                calibration=calibration,
                train_loop=loop,
            )
            state = ModelState(result.module, result.runtime, artifact=result.artifact)
            built[name] = (state, result.module, time.perf_counter() - start)
        built.update(anchors(base.model, data, calibration, work, compiled=not quick))

        scored: dict[str, dict[str, Any]] = {}
        for batch in batches or (recipe.evaluation.batch_size,):
            inputs = data.sample_inputs(batch)
            served = {
                name: prepare(
                    state,
                    work / f"served-{batch}-{i}",
                    input_names=data.input_names,
                    sample_inputs=inputs,
                    threads=threads,
                    arch=base.arch,
                )
                for i, (name, (state, _, _)) in enumerate(built.items())
            }
            for name, prepared in served.items():
                if name not in scored:  # the same model at every batch size: scored once
                    scored[name] = {
                        "accuracy": accuracy(*predict(prepared.engine, data.test.batches(64))),
                        "size": artifact_bytes(prepared.artifact),
                        "linear": linear_weight_bytes(prepared.artifact, built[name][1]),
                    }
            # calls at batch 32 of a real-size CNN take a good part of a second each
            lat = median_p50(
                {n: p.engine for n, p in served.items()},
                inputs,
                repeats=repeats,
                rounds=3 if quick else 10,
                per_round=1 if batch >= 16 else 5,
            )
            fp32 = scored["fp32"]
            timed = against_fastest_anchor(
                [
                    row(
                        workload,
                        n,
                        built[n][0].runtime,
                        accuracy=e["accuracy"],
                        base_accuracy=fp32["accuracy"],
                        latency=lat[n],
                        base_latency=lat["fp32"],
                        size=e["size"],
                        base_size=fp32["size"],
                        wall=built[n][2],
                        batch_size=batch,
                        linear_weight_compression=round(fp32["linear"] / max(1, e["linear"]), 3),
                        int8_peak_pct=efficiency(macs, batch, lat[n], peak),
                        threads=served[n].threads,  # a runtime may serve on fewer
                    )
                    for n, e in scored.items()
                ]
            )
            _profile_fastest_int8(timed, served, inputs, threads, kinds)
            rows += timed
    return rows


def _profile_fastest_int8(
    rows: list[dict[str, Any]],
    served: dict[str, Any],
    inputs: Any,
    threads: int,
    kinds: dict[str, float],
) -> None:
    """Attach ``time_by_op`` (the runtime's own profile) and the model's ``macs_by_kind`` to
    the fastest of slimkit's int8 rows within a point: where an int8 model's time goes when it
    falls short of the peak, beside where its arithmetic is."""
    int8 = [
        r
        for r in rows
        if r["method"].startswith(("static-int8", "dynamic-int8")) and r["accuracy_drop"] <= 1.0
    ]
    if not int8:
        return
    top = min(int8, key=lambda r: r["latency_ms"])
    top["macs_by_kind"] = kinds
    prepared = served[top["method"]]
    used = prepared.threads or threads
    if prepared.artifact.suffix == ".onnx":
        top["time_by_op"] = time_by_op(prepared.artifact, inputs, used)
    elif prepared.artifact.suffix == ".xml":
        top["time_by_op"] = time_by_op_openvino(prepared.artifact, inputs, used)


def anchors(
    model: torch.nn.Module, data: Any, calibration: list, work: Path, compiled: bool = True
) -> dict[str, Any]:
    """The anchors, each run with its tool's defaults: ONNX Runtime, torchao (served by
    torch.compile; ``compiled=False`` leaves it out, as --quick does, since compiling a
    real-size CNN for each batch shape takes minutes), OpenVINO + NNCF."""
    import onnxruntime.quantization as oq
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    from slimkit.export import export_onnx
    from slimkit.quantization.onnxruntime import pre_process
    from slimkit.state import ModelState

    out: dict[str, Any] = {}
    start = time.perf_counter()
    fp32 = export_onnx(model, data.sample_inputs(8), data.input_names, work / "anchor-fp32.onnx")
    pre = work / "anchor-pre.onnx"
    pre_process(fp32, pre)  # ORT's quant_pre_process, as its guide prescribes
    export_wall = time.perf_counter() - start
    if data.input_names == ("pixels",):
        feeds = iter([{"pixels": x[0].numpy()} for x in calibration])

        class Reader(oq.CalibrationDataReader):
            def get_next(self):
                return next(feeds, None)

        start = time.perf_counter()
        oq.quantize_static(str(pre), str(work / "anchor-static.onnx"), Reader())
        out["anchor:onnxruntime:quantize_static"] = (
            ModelState(model, "onnxruntime", artifact=work / "anchor-static.onnx"),
            model,
            export_wall + time.perf_counter() - start,
        )
    start = time.perf_counter()
    oq.quantize_dynamic(str(pre), str(work / "anchor-dynamic.onnx"))
    out["anchor:onnxruntime:quantize_dynamic"] = (
        ModelState(model, "onnxruntime", artifact=work / "anchor-dynamic.onnx"),
        model,
        export_wall + time.perf_counter() - start,
    )
    if compiled:
        start = time.perf_counter()
        ao = copy.deepcopy(model)
        quantize_(ao, Int8DynamicActivationInt8WeightConfig())
        wall = time.perf_counter() - start
        out["anchor:torchao:quantize_"] = (ModelState(ao, "compile"), ao, wall)
    return {**out, **openvino_anchors(model, data, calibration, work)}


def targets(workload: str, rows: list[dict[str, Any]]) -> dict[str, tuple[bool | None, str]]:
    """The quantization targets (issues 3, 20 and 21), checked against this run's rows."""
    by = {r["method"]: r for r in rows}

    def line(r: dict[str, Any]) -> str:
        return (
            f"{r['method']}: {r['speedup']:.2f}x faster, {r['compression']:.2f}x smaller, "
            f"{r['accuracy_drop']:+.2f} points lost"
        )

    out: dict[str, tuple[bool | None, str]] = {}
    if workload == "W1" and "static-int8" in by:
        r = by["static-int8"]
        out["W1 static-int8 >=4x faster, >=3.5x smaller, <=0.5 pts"] = (
            r["speedup"] >= 4 and r["compression"] >= 3.5 and r["accuracy_drop"] <= 0.5,
            line(r),
        )
        # The narrowest weights where post-training quantization loses more than 0.3 points.
        for suffix in ("", "/w3"):
            static, qat = by.get(f"static-int8@torchao{suffix}"), by.get(f"qat@torchao{suffix}")
            if static is None or qat is None or static["accuracy_drop"] <= 0.3:
                continue
            lost = static["accuracy_drop"]
            regained = lost - qat["accuracy_drop"]
            out["W1 QAT recovers >= half of what static-int8 loses (when > 0.3 pts)"] = (
                regained >= lost / 2,
                f"weights {suffix or '8-bit'}: static lost {lost:+.2f} points, "
                f"qat {qat['accuracy_drop']:+.2f}",
            )
            break
    if workload == "W2":
        dyn = [
            r for r in rows if r["method"].startswith("dynamic-int8") and r["accuracy_drop"] <= 1.0
        ]
        best = max(dyn, key=lambda r: r["speedup"]) if dyn else None
        out["W2 dynamic-int8 or w8a8 >=3x faster, <=1.0 pts"] = (
            best is not None and best["speedup"] >= 3,
            line(best) if best else "no row within 1 point",
        )
        # slimkit's own plain int8 of the full model on any backend (anchors excluded)
        int8 = [
            r
            for r in rows
            if "int8" in r["method"]
            and not r["method"].startswith(("anchor:", "weight-only"))
            and r["accuracy_drop"] <= 1.0
        ]
        top = max(int8, key=lambda r: r["speedup"]) if int8 else None
        out["W2 plain int8 of the full model >=4.0x faster than eager fp32, <=1.0 pts"] = (
            top is not None and top["speedup"] >= 4.0,
            line(top) if top else "no int8 row within 1 point",
        )
        if "weight-only-int4" in by:
            r = by["weight-only-int4"]
            out["W2 weight-only-int4 >=6x smaller Linear weights, <=2.0 pts"] = (
                r["linear_weight_compression"] >= 6 and r["accuracy_drop"] <= 2.0,
                f"Linear weights {r['linear_weight_compression']:.2f}x smaller, "
                f"{r['accuracy_drop']:+.2f} points lost",
            )
    if workload == "W3":
        int8 = [
            r
            for r in rows
            if r["batch_size"] == 32
            and r["method"].startswith("static-int8")
            and r["accuracy_drop"] <= 1.0
        ]
        top = max(int8, key=lambda r: r["int8_peak_pct"]) if int8 else None
        reached = top is not None and top["int8_peak_pct"] >= 40.0
        if top is None:
            detail = "no static-int8 row within 1 point at batch 32"
        else:
            detail = f"{line(top)}, {top['int8_peak_pct']:.1f}% of the int8 peak"
            if not reached and top.get("time_by_op"):
                why = why_below_peak(top["int8_peak_pct"], top["time_by_op"], top["macs_by_kind"])
                detail += f"; {why}"
        out["W3 int8 of the unpruned network at batch 32 >= 40% of the int8 peak"] = (
            reached,
            detail,
        )
    return out


if __name__ == "__main__":
    main()
