"""Latency and throughput, measured interleaved so models are compared under the same noise.

Below the runtimes (which time thread counts with it) and evaluation (which times models).

Shared machines drift: a background job can slow one model's run by 30%. Timing every model in
round-robin rounds (order rotated each round) spreads that drift over all of them, so the
ratios between models hold even when the absolute numbers wobble. Each model's turn starts with
one untimed call: the model before it leaves its caches, and its runtime's threads still
spinning or asleep, which a service calling one model never sees (docs/measurements.md,
"Models sharing a process"). Figures are percentiles over
individually timed batches, after warm-up, with the run's thread count for every runtime, or
one thread where that measured faster for the model (small models at batch 1: a thread pool
costs more than it saves, for ONNX Runtime and PyTorch alike).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from slimkit.data.bundle import Inputs

# Interleaved medians of the same model differ by a few percent run to run on a shared machine;
# one model is called slower (or faster) than another only beyond that noise.
SLOWER_MARGIN = 1.05


@dataclass(frozen=True)
class LatencyStats:
    """Per-batch latency percentiles in milliseconds, and examples per second at the median."""

    p50: float
    p90: float
    batch_size: int
    samples: int

    @property
    def throughput(self) -> float:
        return self.batch_size / (self.p50 / 1000.0)


def measure_latency(
    engines: Mapping[str, Callable[[Inputs], object]],
    inputs: Inputs,
    *,
    warmup: int = 10,
    rounds: int = 20,
    per_round: int = 10,
    on_round: Callable[[], None] | None = None,
    threads: Mapping[str, int] | None = None,
) -> dict[str, LatencyStats]:
    """Time each engine on ``inputs``: ``rounds`` x ``per_round`` individually timed calls,
    each engine's turn in a round led by one untimed call.

    ``threads`` gives PyTorch's intra-op thread count per engine (the others keep the current
    one); the count is set at the start of the engine's turn, so the pool resizes in the
    untimed call.
    """
    names = list(engines)
    samples: dict[str, list[float]] = {n: [] for n in names}
    default = torch.get_num_threads()
    wanted = {n: (threads or {}).get(n, default) for n in names}
    try:
        with torch.inference_mode():
            for name in names:
                torch.set_num_threads(wanted[name])
                for _ in range(warmup):
                    engines[name](inputs)
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    torch.set_num_threads(wanted[name])
                    engine = engines[name]
                    engine(inputs)
                    for _ in range(per_round):
                        start = time.perf_counter()
                        engine(inputs)
                        samples[name].append((time.perf_counter() - start) * 1000.0)
                if on_round is not None:
                    on_round()
    finally:
        torch.set_num_threads(default)
    batch = int(inputs[0].shape[0])
    return {
        n: LatencyStats(float(np.percentile(s, 50)), float(np.percentile(s, 90)), batch, len(s))
        for n, s in samples.items()
    }
