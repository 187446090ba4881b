"""Benchmark the demo pipeline (W1: resnet-mini on mnist5k) against anchors, in one process.

1. Runs the shipped demo recipe end to end with an empty baseline cache (training included)
   and records its wall time.
2. Builds the anchors from the same trained baseline: ONNX Runtime serving the fp32 model as is
   (``anchor:onnxruntime:fp32``) and ONNX Runtime's own ``quantize_static`` with its defaults
   (``anchor:onnxruntime:quantize_static``).
3. Times the baseline, every pipeline step and the anchors together, interleaved, in
   ``--repeats`` sessions, and quotes the median p50 latency of each.

    python benchmarks/demo.py --json bench-results/demo.json
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, median_p50, parser, print_table, row, write_json
from slimkit._console import quiet_libraries

TARGETS = {
    "baseline_accuracy": 98.5,
    "speedup": 3.0,
    "compression": 3.0,
    "accuracy_drop": 1.0,
    "wall_s": 300.0,
}


def _method(step: dict) -> str:
    """The name a user writes in a recipe: the mode or method, else the step type."""
    cfg = next((v for k, v in step.items() if k != "name"), {}) if isinstance(step, dict) else {}
    return (
        cfg.get("mode") or (f"prune:{cfg['method']}" if "method" in cfg else None) or step["name"]
    )


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    quiet_libraries()
    import onnxruntime.quantization as oq

    import slimkit
    from slimkit.data.bundle import DataBundle
    from slimkit.evaluation.metrics import accuracy, predict
    from slimkit.export import export_onnx
    from slimkit.sessions import session

    threads = torch.get_num_threads()
    rounds = 5 if args.quick else 20
    repeats = 1 if args.quick else args.repeats

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ["SLIMKIT_CACHE"] = str(tmp_path / "cache")  # train the baseline: worst case
        with resources.as_file(resources.files("slimkit") / "recipes" / "demo.yaml") as recipe_path:
            recipe = slimkit.Recipe.load(recipe_path)
        start = time.perf_counter()
        result = slimkit.run(recipe, out=tmp_path / "run")
        demo_wall = time.perf_counter() - start
        res, run_dir = result.results, result.run_dir
        data: DataBundle = slimkit.load_data(recipe.data)
        inputs = data.sample_inputs(recipe.evaluation.batch_size)

        engines, sizes, accs, runtimes, walls = {}, {}, {}, {}, {}
        for step, raw in zip(
            res["steps"], [{"name": "fp32"}, *res["recipe"]["steps"]], strict=True
        ):
            name = "fp32" if step["kind"] == "baseline" else _method(raw)
            artifact = run_dir / step["artifact"]
            if artifact.suffix == ".onnx":
                sess = session(artifact, threads)
                engines[name] = lambda x, s=sess: torch.from_numpy(
                    s.run(None, {"pixels": x[0].numpy()})[0]
                )
            else:
                model = slimkit.build_model(str(artifact))
                engines[name] = lambda x, m=model: m(*x)
            sizes[name], accs[name], runtimes[name], walls[name] = (
                step["size_bytes"],
                step["accuracy"],
                step["runtime"],
                step["wall_s"],
            )
        baseline = slimkit.build_model(str(run_dir / res["steps"][0]["artifact"]))

        start = time.perf_counter()
        fp32_onnx = export_onnx(
            baseline, data.sample_inputs(8), data.input_names, tmp_path / "fp32.onnx"
        )
        anchors = {"anchor:onnxruntime:fp32": (fp32_onnx, time.perf_counter() - start)}
        start = time.perf_counter()
        pre = tmp_path / "pre.onnx"
        oq.shape_inference.quant_pre_process(str(fp32_onnx), str(pre))
        calib = iter([{"pixels": x[0].numpy()} for x, _ in data.calibration(512).batches(32)])

        class Reader(oq.CalibrationDataReader):
            def get_next(self):
                return next(calib, None)

        qpath = tmp_path / "ort_static.onnx"
        oq.quantize_static(str(pre), str(qpath), Reader())  # ONNX Runtime's defaults
        anchors["anchor:onnxruntime:quantize_static"] = (qpath, time.perf_counter() - start)
        for name, (path, wall) in anchors.items():
            sess = session(path, threads)
            engines[name] = lambda x, s=sess: torch.from_numpy(
                s.run(None, {"pixels": x[0].numpy()})[0]
            )
            logits, labels = predict(engines[name], data.test.batches(256))
            sizes[name], accs[name], runtimes[name], walls[name] = (
                path.stat().st_size,
                accuracy(logits, labels),
                "onnxruntime",
                wall,
            )

        lat = median_p50(engines, inputs, repeats=repeats, rounds=rounds, per_round=10, warmup=10)

    base = "fp32"
    rows = [
        row(
            "W1",
            n,
            runtimes[n],
            accuracy=accs[n],
            base_accuracy=accs[base],
            latency=lat[n],
            base_latency=lat[base],
            size=sizes[n],
            base_size=sizes[base],
            wall=walls[n],
        )
        for n in engines
    ]
    print_table(
        f"W1 demo pipeline vs anchors (batch {inputs[0].shape[0]}, {threads} threads, "
        f"median p50 of {repeats} interleaved sessions)",
        rows,
    )
    final = rows[len(res["steps"]) - 1]
    checks = {
        "baseline_accuracy": (accs[base], accs[base] >= TARGETS["baseline_accuracy"]),
        "speedup": (final["speedup"], final["speedup"] >= TARGETS["speedup"]),
        "compression": (final["compression"], final["compression"] >= TARGETS["compression"]),
        "accuracy_drop": (
            final["accuracy_drop"],
            final["accuracy_drop"] <= TARGETS["accuracy_drop"],
        ),
        "wall_s": (demo_wall, demo_wall <= TARGETS["wall_s"]),
    }
    for k, (value, ok) in checks.items():
        print(f"{'PASS' if ok else 'FAIL'} {k}: {value:.2f} (target {TARGETS[k]})")
    write_json(
        args.json,
        machine(threads),
        rows,
        demo={
            "wall_s": round(demo_wall, 1),
            "targets": TARGETS,
            "checks": {k: {"value": v, "pass": ok} for k, (v, ok) in checks.items()},
        },
    )


if __name__ == "__main__":
    main()
