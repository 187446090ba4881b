"""``slimkit eval``, ``bench`` and ``sensitivity``: measure one model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from slimkit._console import progress_for
from slimkit.cli._common import (
    BatchOpt,
    DataOpt,
    ModelOpt,
    Trust,
    TrustCheckpointOpt,
    TrustRemoteCodeOpt,
    WeightsOpt,
    console,
    model_and_data,
)
from slimkit.pruning.sensitivity import DEFAULT_RATIOS


def _runtime(name: str) -> str:
    """A registered runtime's name (plugins add runtimes, so this is not a fixed choice)."""
    from slimkit.runtimes import RUNTIMES

    if name not in RUNTIMES:
        raise typer.BadParameter(RUNTIMES.unknown_message(name))
    return name


def eval_cmd(
    model: ModelOpt,
    data: DataOpt,
    weights: WeightsOpt = None,
    runtime: Annotated[
        str | None,
        typer.Option(
            "--runtime",
            "--backend",
            callback=lambda v: v and _runtime(v),
            help="Runtime to serve on [default: eager; onnxruntime for an .onnx model].",
        ),
    ] = None,
    batch_size: BatchOpt = 1,
    trust_checkpoint: TrustCheckpointOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Measure one model: accuracy, parameters, non-zeros, size, MACs, latency."""
    from slimkit.evaluation import evaluate

    with progress_for(console) as progress, progress.task("loading and measuring"):
        net, bundle, arch = model_and_data(
            model, data, weights, Trust(trust_checkpoint, trust_remote_code)
        )
        figures = evaluate(net, bundle, runtime=runtime, batch_size=batch_size, arch=arch)
    table = Table(title=f"{model} on {data}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(
            key,
            json.dumps(value)
            if isinstance(value, dict)
            else f"{value:,.4g}"
            if isinstance(value, float)
            else str(value),
        )
    console.print(table)


def bench(
    model: ModelOpt,
    data: DataOpt,
    weights: WeightsOpt = None,
    runtime: Annotated[
        list[str] | None,
        typer.Option(
            "--runtime",
            "--backend",
            callback=lambda v: v and [_runtime(r) for r in v],
            help="Repeat to compare runtimes [default: eager, onnxruntime and openvino; for an "
            ".onnx model, every runtime that loads ONNX].",
        ),
    ] = None,
    batch_size: BatchOpt = 1,
    rounds: Annotated[int, typer.Option(min=1, help="Interleaved timing rounds.")] = 20,
    trust_checkpoint: TrustCheckpointOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Time one model on several runtimes, interleaved in one process."""
    import tempfile

    from slimkit.evaluation import measure, time_interleaved
    from slimkit.report.markdown import human_bytes
    from slimkit.state import ModelState

    with progress_for(console) as progress, tempfile.TemporaryDirectory() as tmp:
        with progress.task("loading model and data"):
            net, bundle, arch = model_and_data(
                model, data, weights, Trust(trust_checkpoint, trust_remote_code)
            )
        runtimes = list(dict.fromkeys(runtime or _default_runtimes(net)))
        ms = [
            measure(
                r,
                "bench",
                ModelState(net, r),
                bundle,
                artifact_stem=Path(tmp) / r,
                arch=arch,
                batch_size=batch_size,
            )
            for r in runtimes
        ]
        time_interleaved(ms, bundle, batch_size=batch_size, rounds=rounds, progress=progress)
    table = Table(title=f"{model} on {data}, batch {batch_size}", title_justify="left")
    for col in ("runtime", "acc %", "size", "p50 ms", "p90 ms", "ex/s", "vs first"):
        table.add_column(col, justify="left" if col == "runtime" else "right")
    first = ms[0].latency
    for m in ms:
        lat = m.latency
        assert lat is not None and first is not None
        table.add_row(
            m.name,
            f"{m.accuracy:.2f}",
            human_bytes(m.size_bytes),
            f"{lat.p50:.3f}",
            f"{lat.p90:.3f}",
            f"{lat.throughput:.0f}",
            f"{first.p50 / lat.p50:.2f}x",
        )
    console.print(table)


def _default_runtimes(net: object) -> list[str]:
    """What ``bench`` compares when no runtime is named: eager PyTorch, ONNX Runtime and
    OpenVINO for a PyTorch model; every runtime that loads ONNX for a graph."""
    from slimkit.models.graph import OnnxGraph
    from slimkit.runtimes import RUNTIMES

    if isinstance(net, OnnxGraph):
        return [r.name for r in RUNTIMES.values() if r.takes_graph]
    return ["eager", "onnxruntime", "openvino"]


_DEFAULT_RATIOS = ",".join(f"{r:g}" for r in DEFAULT_RATIOS)


def _ratios(text: str) -> list[float]:
    try:
        return [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None


def sensitivity(
    model: ModelOpt,
    data: DataOpt,
    weights: WeightsOpt = None,
    ratios: Annotated[
        str, typer.Option(help="Sparsities to try per layer, comma-separated.")
    ] = _DEFAULT_RATIOS,
    target_sparsity: Annotated[
        float | None,
        typer.Option(min=0.0, max=0.99, help="Derive per-layer sparsities for this overall one."),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for the table, JSON and plot (new or empty)."),
    ] = Path("sensitivity"),
    trust_checkpoint: TrustCheckpointOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Prune each layer alone at several sparsities and measure it: table, JSON and plot."""
    from slimkit._io import write_json, write_text
    from slimkit.errors import RunDirError
    from slimkit.evaluation.metrics import accuracy, predict
    from slimkit.pruning import sensitivity as sens

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(f"{out} already exists and is not empty; choose another --out.")
    levels = _ratios(ratios)
    with progress_for(console) as progress:
        with progress.task("loading model and data"):
            net, bundle, _ = model_and_data(
                model, data, weights, Trust(trust_checkpoint, trust_remote_code)
            )
        layers = sens.prunable_layers(net)
        with progress.task("pruning each layer alone", total=len(layers)) as task:
            curves = sens.layer_sensitivity(
                net,
                lambda m: accuracy(*predict(lambda x: m(*x), bundle.val.batches(256))),
                levels,
                on_layer=lambda _: task.advance(),
            )
    allocation = sens.allocate(curves, target_sparsity) if target_sparsity else None
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "sensitivity.md", sens.table(curves, allocation))
    write_json(
        out / "sensitivity.json",
        {
            "model": model,
            "data": data,
            "metric": "accuracy",
            "split": "val",
            "layers": [
                {
                    "layer": c.layer,
                    "weights": c.size,
                    "baseline": c.baseline,
                    "metric": {str(r): v for r, v in c.metric.items()},
                }
                for c in curves
            ],
            "allocation": allocation,
            "target_sparsity": target_sparsity,
        },
    )
    sens.plot(curves, out / "sensitivity.png")
    table = Table(
        title=f"{model}: validation accuracy drop (points) with one layer pruned",
        title_justify="left",
    )
    head = ["layer", "weights", *(f"@{r:.0%}" for r in levels)] + (
        ["allocated"] if allocation else []
    )
    for h in head:
        table.add_column(h, justify="left" if h == "layer" else "right")
    for c in curves:
        row = [c.layer, f"{c.size:,}", *(f"{c.drop(r):+.2f}" for r in sorted(levels))]
        table.add_row(*row, *([f"{allocation[c.layer]:.0%}"] if allocation else []))
    console.print(table)
    console.print(f"Wrote {out}/sensitivity.md, sensitivity.json, sensitivity.png")
