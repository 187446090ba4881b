"""``backend: auto``: quantize with every backend that can run the mode, measure, keep the best.

Which backend is fastest depends on the model, the batch size and the CPU: on a small CNN at
batch 1, ONNX Runtime's int8 can lose to its own fp32 while PT2E int8 ties compiled fp32. So
nothing is assumed: every candidate is built, scored on the validation split and timed
interleaved, and the fastest within ``max_accuracy_drop`` of the float model wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimkit.data.bundle import DataBundle
from slimkit.errors import RecipeError, StepError
from slimkit.quantization import QuantizeConfig, QuantizedModel, backends_for
from slimkit.quantization._candidates import adopt, build, serve, val_accuracy, variant, workspace
from slimkit.runtimes import Engine
from slimkit.timing import measure_latency

ROUNDS = 10


@dataclass
class Candidate:
    """One backend's attempt: its validation accuracy and latency, or why it could not run."""

    backend: str
    accuracy: float | None = None
    latency_ms: float | None = None
    skipped: str | None = None

    def describe(self) -> str:
        if self.skipped is not None:
            return f"{self.backend}: skipped ({self.skipped})"
        return f"{self.backend}: {self.latency_ms:.3f} ms, {self.accuracy:.2f}%"


def choose_backend(
    model: nn.Module,
    config: QuantizeConfig,
    *,
    data: DataBundle,
    out_path: Path,
    batch_size: int,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
    train_loop: Callable[[nn.Module], None] | None = None,
) -> tuple[QuantizedModel, QuantizeConfig, list[Candidate]]:
    """Build every backend's model, keep the fastest within budget; return it and the tally."""
    batches = list(calibration) if calibration is not None else None
    float_acc = val_accuracy(lambda x: model(*x), data)
    built: dict[str, tuple[QuantizedModel, QuantizeConfig, Engine]] = {}
    candidates: list[Candidate] = []
    with workspace(out_path) as work:
        for backend in map(str, backends_for(config.mode)):
            candidate = Candidate(backend)
            candidates.append(candidate)
            try:
                cfg = variant(config, backend=backend)
                result = build(model, cfg, data, work / f"{backend}.onnx", batches, train_loop)
            except (RecipeError, StepError) as err:
                candidate.skipped = str(err).removeprefix("Invalid configuration: ")
                continue
            engine = serve(result, data, work, backend, batch_size)
            candidate.accuracy = val_accuracy(engine, data)
            built[backend] = (result, cfg, engine)
        if not built:
            raise StepError(
                f"No backend could run {config.mode}: "
                + "; ".join(c.describe() for c in candidates)
                + "."
            )
        stats = measure_latency(
            {b: e for b, (_, _, e) in built.items()},
            data.sample_inputs(batch_size),
            warmup=5,
            rounds=ROUNDS,
            per_round=5,
        )
        for c in candidates:
            if c.backend in stats:
                c.latency_ms = stats[c.backend].p50
        ran = [c for c in candidates if c.skipped is None]
        within = [c for c in ran if float_acc - (c.accuracy or 0.0) <= config.max_accuracy_drop]
        # Within budget: the fastest. None within budget: the most accurate, and the step says so.
        best = (
            min(within, key=lambda c: c.latency_ms or 0.0)
            if within
            else max(ran, key=lambda c: c.accuracy or 0.0)
        )
        result, cfg, _ = built[best.backend]
        adopt(result, out_path)
    return result, cfg, candidates
