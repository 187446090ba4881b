"""Measure a model the way every pipeline step is measured, and time several interleaved."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from slimkit.data.bundle import DataBundle
from slimkit.evaluation.macs import count_macs
from slimkit.evaluation.metrics import METRICS, predict
from slimkit.evaluation.size import (
    artifact_bytes,
    bytes_by_layer_type,
    count_nonzero,
    count_params,
)
from slimkit.models.arch import Arch
from slimkit.progress import SILENT, Progress
from slimkit.runtimes import Prepared, prepare
from slimkit.state import ModelState, runtime_for
from slimkit.timing import LatencyStats, measure_latency


@runtime_checkable
class Served(Protocol):
    """A result that is not served by eager PyTorch (what ``quantize`` returns): it knows the
    state its runtime prepares."""

    def serving_state(self) -> ModelState: ...


EVAL_BATCH = 256  # accuracy is computed in large batches; latency uses the timing batch size


@dataclass
class Measurement:
    """Everything measured about one model; ``latency`` is filled by :func:`time_interleaved`."""

    name: str
    kind: str
    state: ModelState
    prepared: Prepared
    metrics: dict[str, float]
    params: int
    nonzero_params: int
    macs: int
    size_bytes: int
    bytes_by_layer_type: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    latency: LatencyStats | None = None

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


def measure(
    name: str,
    kind: str,
    state: ModelState,
    data: DataBundle,
    *,
    artifact_stem: Path,
    arch: Arch | None,
    batch_size: int,
    metrics: Sequence[str] = (),
) -> Measurement:
    """Serve ``state`` on its runtime (writing its artifact) and measure all but latency."""
    prepared = prepare(
        state,
        artifact_stem,
        input_names=data.input_names,
        sample_inputs=data.sample_inputs(batch_size),
        threads=torch.get_num_threads(),
        arch=arch,
        check_inputs=data.held_out_inputs(),
    )
    logits, labels = predict(prepared.engine, data.test.batches(EVAL_BATCH))
    scores = {m: METRICS.get(m)(logits, labels) for m in ("accuracy", *metrics)}
    return Measurement(
        name=name,
        kind=kind,
        state=state,
        prepared=prepared,
        metrics=scores,
        params=count_params(state.module),
        nonzero_params=count_nonzero(state.module),
        macs=count_macs(state.module, data.sample_inputs(1)),
        size_bytes=artifact_bytes(prepared.artifact),
        bytes_by_layer_type=bytes_by_layer_type(state.module, prepared.artifact),
        notes=list(prepared.notes),
    )


def time_interleaved(
    measurements: Sequence[Measurement],
    data: DataBundle,
    *,
    batch_size: int,
    warmup: int = 10,
    rounds: int = 20,
    per_round: int = 10,
    progress: Progress = SILENT,
) -> None:
    """Fill each measurement's latency, timing all of them in the same interleaved rounds."""
    engines = {m.name: m.prepared.engine for m in measurements}
    with progress.task(f"timing {len(engines)} models, interleaved", total=rounds) as task:
        stats = measure_latency(
            engines,
            data.sample_inputs(batch_size),
            warmup=warmup,
            rounds=rounds,
            per_round=per_round,
            on_round=task.advance,
            threads={m.name: m.prepared.threads for m in measurements if m.prepared.threads},
        )
    for m in measurements:
        m.latency = stats[m.name]


def evaluate(
    model: nn.Module | Served,
    data: DataBundle,
    *,
    runtime: str | None = None,
    batch_size: int = 1,
    arch: Arch | None = None,
    rounds: int = 20,
) -> dict[str, Any]:
    """Accuracy, parameters, non-zeros, size, MACs and latency of ``model`` on ``data``.

    ``model`` is a module (what ``prune``, ``train`` and ``distill`` leave, or an ONNX graph
    ``build_model("model.onnx")`` gives) or what ``quantize`` returns. ``runtime`` is the one to
    serve it on: by default eager PyTorch for a module, ONNX Runtime for a graph, and the
    runtime it was quantized for for a quantized model.

    >>> import slimkit
    >>> data = slimkit.load_data("mnist5k")
    >>> net = slimkit.build_model("resnet-mini", num_classes=10, in_channels=1)
    >>> slimkit.evaluate(net, data)["params"]
    77754
    """
    if isinstance(model, Served):
        state = model.serving_state()
        state.runtime = runtime or state.runtime
    else:
        state = ModelState(model, runtime_for(model, runtime))
    with tempfile.TemporaryDirectory(prefix="slimkit-eval-") as tmp:
        m = measure(
            "model",
            "model",
            state,
            data,
            artifact_stem=Path(tmp) / "model",
            arch=arch,
            batch_size=batch_size,
        )
        time_interleaved([m], data, batch_size=batch_size, rounds=rounds)
        assert m.latency is not None
        return {
            "accuracy": m.accuracy,
            "runtime": state.runtime,
            "params": m.params,
            "nonzero_params": m.nonzero_params,
            "size_bytes": m.size_bytes,
            "macs": m.macs,
            "latency_ms": {"p50": m.latency.p50, "p90": m.latency.p90},
            "throughput": m.latency.throughput,
            "batch_size": batch_size,
        }
