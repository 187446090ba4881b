"""Benchmark the demo pipeline (W1: resnet-mini on mnist5k) against anchors, in one process.

1. Runs the shipped demo recipe end to end with an empty baseline cache (training included)
   and records its wall time.
2. Builds the anchors from the same trained baseline: ONNX Runtime serving the fp32 model as is
   (``anchor:onnxruntime:fp32``), ONNX Runtime's own ``quantize_static`` with its defaults
   (``anchor:onnxruntime:quantize_static``), OpenVINO serving it (``anchor:openvino:fp32``)
   and NNCF's ``quantize`` of it (``anchor:openvino+nncf:int8``), each with its tool's defaults.
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
from _common import (
    against_fastest_anchor,
    machine,
    median_p50,
    openvino_anchors,
    parser,
    print_table,
    row,
    write_json,
)
from slimkit._console import quiet_libraries

TARGETS = {
    "baseline_accuracy": 98.5,
    "speedup": 3.0,
    "vs_fastest_anchor": 2.0,  # the baseline on its fastest runtime, or a tool's own int8
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
    from slimkit.evaluation.size import artifact_bytes
    from slimkit.export import export_onnx
    from slimkit.runtimes import Prepared, prepare
    from slimkit.state import ModelState

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

        def serve(state: ModelState) -> Prepared:
            """Serve ``state`` on its runtime, as the pipeline does, at the demo's batch size."""
            return prepare(
                state,
                tmp_path / f"served-{len(engines)}",
                input_names=data.input_names,
                sample_inputs=inputs,
                threads=threads,
                arch=None,
            )

        baseline = slimkit.build_model(str(run_dir / res["steps"][0]["artifact"]))
        for step, raw in zip(
            res["steps"], [{"name": "fp32"}, *res["recipe"]["steps"]], strict=True
        ):
            name = "fp32" if step["kind"] == "baseline" else _method(raw)
            artifact = run_dir / step["artifact"]
            # served again from the run's file, as its runtime loads it
            graph = artifact.suffix in (".onnx", ".xml")
            module = baseline if graph else slimkit.build_model(str(artifact))
            state = ModelState(module, step["runtime"], artifact=artifact if graph else None)
            engines[name] = serve(state).engine
            sizes[name], accs[name], runtimes[name], walls[name] = (
                step["size_bytes"],
                step["accuracy"],
                step["runtime"],
                step["wall_s"],
            )
        start = time.perf_counter()
        fp32_onnx = export_onnx(
            baseline, data.sample_inputs(8), data.input_names, tmp_path / "fp32.onnx"
        )
        anchors = {
            "anchor:onnxruntime:fp32": (
                ModelState(baseline, "onnxruntime", artifact=fp32_onnx),
                baseline,
                time.perf_counter() - start,
            )
        }
        start = time.perf_counter()
        pre = tmp_path / "pre.onnx"
        oq.shape_inference.quant_pre_process(str(fp32_onnx), str(pre))
        batches = [x for x, _ in data.calibration(512).batches(32)]
        calib = iter([{"pixels": x[0].numpy()} for x in batches])

        class Reader(oq.CalibrationDataReader):
            def get_next(self):
                return next(calib, None)

        qpath = tmp_path / "ort_static.onnx"
        oq.quantize_static(str(pre), str(qpath), Reader())  # ONNX Runtime's defaults
        anchors["anchor:onnxruntime:quantize_static"] = (
            ModelState(baseline, "onnxruntime", artifact=qpath),
            baseline,
            time.perf_counter() - start,
        )
        anchors.update(openvino_anchors(baseline, data, batches, tmp_path))
        for name, (state, _, wall) in anchors.items():
            prepared = serve(state)
            engines[name] = prepared.engine
            logits, labels = predict(engines[name], data.test.batches(256))
            sizes[name], accs[name], runtimes[name], walls[name] = (
                artifact_bytes(prepared.artifact),
                accuracy(logits, labels),
                state.runtime,
                wall,
            )

        lat = median_p50(engines, inputs, repeats=repeats, rounds=rounds, per_round=10, warmup=10)

    base = "fp32"
    rows = against_fastest_anchor(
        [
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
    )
    print_table(
        f"W1 demo pipeline vs anchors (batch {inputs[0].shape[0]}, {threads} threads, "
        f"median p50 of {repeats} interleaved sessions)",
        rows,
    )
    final = rows[len(res["steps"]) - 1]
    checks = {
        "baseline_accuracy": (accs[base], accs[base] >= TARGETS["baseline_accuracy"]),
        "speedup": (final["speedup"], final["speedup"] >= TARGETS["speedup"]),
        "vs_fastest_anchor": (
            final["vs_fastest_anchor"],
            final["vs_fastest_anchor"] >= TARGETS["vs_fastest_anchor"],
        ),
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
