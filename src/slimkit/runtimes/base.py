"""The runtime registry and the record a prepared model comes back as."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from slimkit.data.bundle import Inputs
from slimkit.errors import StepError
from slimkit.models.arch import Arch
from slimkit.models.graph import OnnxGraph
from slimkit.registry import Registry
from slimkit.state import ModelState
from slimkit.timing import measure_latency

Engine = Callable[[Inputs], torch.Tensor]
FEWER_THREADS_MARGIN = 1.1  # one thread is kept only when it is at least 10% faster


@dataclass(frozen=True)
class Prepared:
    """A model ready to serve: its engine, the artifact file that engine loads, the threads it
    runs on where the runtime chose them (else the context's), and notes on what the runtime
    decided for this model and why."""

    engine: Engine
    artifact: Path
    notes: tuple[str, ...] = ()
    threads: int | None = None


@dataclass(frozen=True)
class ServeContext:
    """What a runtime needs besides the model: example inputs, threads, the architecture record,
    and held-out inputs to verify an exported artifact on."""

    input_names: tuple[str, ...]
    sample_inputs: Inputs
    threads: int
    arch: Arch | None
    check_inputs: Inputs | None = None


PrepareFn = Callable[[ModelState, Path, "ServeContext"], Prepared]


@dataclass(frozen=True)
class Runtime:
    """How to serve a state: ``prepare(state, artifact_stem, context) -> Prepared``.
    ``takes_graph``: it serves a model that is only an ONNX graph (it loads ONNX files)."""

    name: str
    description: str
    prepare: PrepareFn
    takes_graph: bool = False


RUNTIMES: Registry[Runtime] = Registry("runtime")


def register_runtime(
    name: str, description: str | None = None, *, takes_graph: bool = False
) -> Callable[[PrepareFn], PrepareFn]:
    """Register ``prepare(state, artifact_stem, context) -> Prepared`` as runtime ``name``.

    ``prepare`` writes the file the runtime loads next to ``artifact_stem`` (its size is the
    model's size on disk) and returns the engine every latency figure is timed through. With
    ``takes_graph``, it also serves models that are only an ONNX graph
    (:class:`~slimkit.models.graph.OnnxGraph`; :func:`~slimkit.export.export_onnx` writes one
    as it is).
    """

    def decorator(prepare: PrepareFn) -> PrepareFn:
        doc = (prepare.__doc__ or "").strip().splitlines()
        description_ = description or (doc[0] if doc else "")
        RUNTIMES.add(name, Runtime(name, description_, prepare, takes_graph))
        return prepare

    return decorator


def fewer_threads(
    runtime: str,
    many: Callable[[Inputs], object],
    one: Callable[[Inputs], object],
    ctx: ServeContext,
) -> tuple[int, str | None]:
    """The thread count that serves the context's inputs faster: ``ctx.threads`` (``many``) or
    one (``one``; the same engine for PyTorch, whose threads are set per call), timed
    interleaved, and a note when one thread won. For small models at small batches the thread
    pool costs more than it saves (docs/measurements.md, "Threads")."""
    if ctx.threads == 1:
        return 1, None
    inputs = ctx.sample_inputs
    start = time.perf_counter()
    with torch.inference_mode():
        many(inputs)
        one(inputs)
    # About half a second in all: enough calls to see a 10% difference on small models through
    # a shared machine's noise, three per round on large ones.
    calls = max(3, min(100, int(0.035 / max(time.perf_counter() - start, 1e-6))))
    stats = measure_latency(
        {"many": many, "one": one},
        inputs,
        warmup=3,
        rounds=7,
        per_round=calls,
        threads={"many": ctx.threads, "one": 1},
    )
    t_many, t_one = stats["many"].p50, stats["one"].p50
    if t_one * FEWER_THREADS_MARGIN < t_many:
        return 1, (
            f"{runtime} serves this model on 1 intra-op thread: {t_one:.3g} ms per batch vs "
            f"{t_many:.3g} ms on {ctx.threads} (the thread pool costs more than it saves)"
        )
    return ctx.threads, None


def param_dtype(module: torch.nn.Module) -> torch.dtype:
    """The floating dtype of ``module``'s parameters (fp32 for a model without any)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


def in_dtype(inputs: Inputs, dtype: torch.dtype) -> Inputs:
    """Float inputs cast to ``dtype`` (a half-precision model's); token ids left as they are."""
    return tuple(x.to(dtype) if x.is_floating_point() else x for x in inputs)


def prepare(
    state: ModelState,
    artifact_stem: Path,
    *,
    input_names: tuple[str, ...],
    sample_inputs: Inputs,
    threads: int,
    arch: Arch | None,
    check_inputs: Inputs | None = None,
) -> Prepared:
    """Serve ``state`` on its runtime, writing its artifact next to ``artifact_stem``."""
    if state.runtime not in RUNTIMES:
        raise StepError(RUNTIMES.unknown_message(state.runtime))
    runtime = RUNTIMES.get(state.runtime)
    if isinstance(state.module, OnnxGraph) and not runtime.takes_graph:
        graphs = [r.name for r in RUNTIMES.values() if r.takes_graph]
        raise StepError(
            f"{state.module.path} is an ONNX graph, which {state.runtime} cannot serve: it "
            f"runs PyTorch models. Serve it on {' or '.join(graphs)} (--runtime / "
            "evaluation.runtime), or start from the PyTorch model."
        )
    context = ServeContext(input_names, sample_inputs, threads, arch, check_inputs)
    return runtime.prepare(state, artifact_stem, context)
