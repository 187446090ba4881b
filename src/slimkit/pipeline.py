"""Run a recipe: baseline, then each step, measuring every model the same way, into a run dir.

After each step the new model is evaluated (metric, parameters, non-zeros, MACs, size of the
artifact its runtime loads). Latency is measured last, for all models together in interleaved
rounds, so the speedups in ``results.json`` compare models under the same machine conditions.
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit._io import write_json, write_text
from slimkit.data import DataBundle, load_data
from slimkit.errors import ShapeMismatchError
from slimkit.evaluation import Measurement, measure, time_interleaved
from slimkit.models import arch_of, build_model, load_tokenizer_for
from slimkit.progress import SILENT, Progress, Task
from slimkit.recipe import Recipe, StepSpec
from slimkit.report import write_reports
from slimkit.results import build_results
from slimkit.rundir import busy_warning, create_run_dir, environment
from slimkit.state import ModelState
from slimkit.steps import STEPS, StepContext
from slimkit.training import cache, train
from slimkit.training.step import describe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    """Where the run landed and what ``results.json`` holds."""

    run_dir: Path
    results: dict[str, Any]


def run(
    recipe: Recipe, out: str | os.PathLike[str] | None = None, progress: Progress = SILENT
) -> RunResult:
    """Run ``recipe`` into a new run directory and return its results.

    Under ``torchrun`` / ``accelerate launch`` every process runs the recipe, so training is
    data-parallel; only the main process (rank 0) measures and writes the run directory.

    >>> import slimkit
    >>> result = slimkit.run(slimkit.Recipe.load("recipes/demo.yaml"))  # doctest: +SKIP
    >>> result.results["summary"]["speedup"]  # doctest: +SKIP
    """
    if int(os.environ.get("RANK", "0")) > 0:
        return _follow(recipe)
    return execute(recipe, create_run_dir(recipe.name, out), progress)


def execute(
    recipe: Recipe,
    run_dir: Path,
    progress: Progress = SILENT,
    base: Baseline | None = None,
    extra: dict[str, Any] | None = None,
) -> RunResult:
    """Run ``recipe`` into the existing ``run_dir``: :func:`run` without creating the folder.

    ``base`` reuses a baseline already prepared for this recipe; ``extra`` adds sections to
    results.json (a search adds its trials).
    """
    threads = recipe.evaluation.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed)
    write_text(run_dir / "recipe.yaml", recipe.to_yaml())
    env = environment(threads)
    write_json(run_dir / "environment.json", env)

    start = time.perf_counter()
    base = base or prepare_baseline(recipe, progress)
    ev = recipe.evaluation

    def measured(name: str, kind: str, done: Done) -> Measurement:
        m = measure_as(recipe, base.data, name, kind, done.state, done.stem, done.arch)
        m.wall_s, m.notes = time.perf_counter() - done.start, list(done.state.notes)
        return m

    state = ModelState(base.model, ev.backend, notes=base.notes)
    first = Done(state, run_dir / "artifacts" / "00-baseline", base.arch, start)
    records = [measured("baseline", "baseline", first)]
    for step, done, task in apply_steps(recipe, base, state, run_dir / "artifacts", progress):
        records.append(measured(step.name, step.kind, done))
        task.update(f"{done.label}: accuracy {records[-1].accuracy:.2f}%")

    busy = busy_warning()
    time_as(recipe, records, base.data, progress)
    _note_regressions(records)
    results = build_results(recipe.to_dict(), records, run_dir, env)
    busy = busy or busy_warning()
    results["warnings"] = [busy] if busy else []
    results.update(extra or {})
    write_json(run_dir / "results.json", results)
    write_reports(run_dir, results)
    return RunResult(run_dir, results)


@dataclass(frozen=True)
class Done:
    """A step's outcome: the new state, where its artifacts go, its arch, when it started."""

    state: ModelState
    stem: Path
    arch: dict[str, Any]
    start: float
    label: str = "baseline"


def measure_as(
    recipe: Recipe,
    data: DataBundle,
    name: str,
    kind: str,
    state: ModelState,
    stem: Path,
    arch: dict[str, Any],
) -> Measurement:
    """Measure ``state`` (all but latency) the way ``recipe``'s evaluation settings say."""
    ev = recipe.evaluation
    return measure(
        name,
        kind,
        state,
        data,
        artifact_stem=stem,
        arch=arch,
        batch_size=ev.batch_size,
        metrics=ev.metrics,
    )


def time_as(
    recipe: Recipe, records: list[Measurement], data: DataBundle, progress: Progress = SILENT
) -> None:
    """Time ``records`` interleaved with ``recipe``'s evaluation settings."""
    ev = recipe.evaluation
    time_interleaved(
        records,
        data,
        batch_size=ev.batch_size,
        warmup=ev.warmup,
        rounds=ev.rounds,
        per_round=ev.per_round,
        progress=progress,
    )


def step_context(
    recipe: Recipe, base: Baseline, stem: Path, arch: dict[str, Any], progress: Progress
) -> StepContext:
    """What a step of ``recipe`` gets besides the model."""
    ev = recipe.evaluation
    return StepContext(
        base.data, stem, progress, recipe.seed, ev.batch_size, arch, baseline=base.model
    )


def apply_step(step: StepSpec, state: ModelState, ctx: StepContext) -> ModelState:
    """Apply one step to a copy of ``state``'s model (the input state is left as it was)."""
    given = ModelState(copy.deepcopy(state.module), state.backend)
    return STEPS.get(step.kind).apply(given, step.config, ctx)


def apply_steps(
    recipe: Recipe, base: Baseline, state: ModelState, root: Path, progress: Progress
) -> Iterator[tuple[StepSpec, Done, Task]]:
    """Apply the recipe's steps in order, each to a copy of the previous model.

    Yields inside each step's progress task, so the caller can measure before it closes.
    """
    arch = base.arch
    for i, step in enumerate(recipe.steps, 1):
        stem = root / f"{i:02d}-{step.name}"
        label = f"step {i}/{len(recipe.steps)}: {step.name}"
        with progress.task(f"{label} ({step.kind})") as task:
            start = time.perf_counter()
            state = apply_step(step, state, step_context(recipe, base, stem, arch, progress))
            arch = state.arch or arch
            yield step, Done(state, stem, arch, start, label), task


def _follow(recipe: Recipe) -> RunResult:
    """A non-main process of a data-parallel launch: the same baseline and steps in step with
    rank 0 (their training is collective), measuring nothing and writing no run directory."""
    torch.manual_seed(recipe.seed)
    base = prepare_baseline(recipe)
    state = ModelState(base.model, recipe.evaluation.backend)
    with tempfile.TemporaryDirectory(prefix="slimkit-follower-") as tmp:
        for _ in apply_steps(recipe, base, state, Path(tmp), SILENT):
            pass
        return RunResult(Path(tmp), {})


@dataclass(frozen=True)
class Baseline:
    """A recipe's baseline: the model (trained or loaded), its data, and how to rebuild it."""

    model: nn.Module
    data: DataBundle
    arch: dict[str, Any]
    notes: list[str]


def prepare_baseline(recipe: Recipe, progress: Progress = SILENT) -> Baseline:
    """Load the recipe's data and model, check they fit, and train or reuse the baseline.

    Benchmarks and searches start from here too, so every tool measures the same baseline.
    """
    with progress.task("loading model and data") as task:
        data = load_data(recipe.data, load_tokenizer_for(recipe.model))
        hints = {
            k: v
            for k, v in (("num_classes", data.num_classes), ("in_channels", data.in_channels))
            if v is not None
        }
        model = build_model(recipe.model, **hints)
        check_fits(model, data, recipe.model.source)
        arch = arch_of(recipe.model, hints)
        task.advance()
    notes = _baseline(model, arch, recipe, data, progress)
    return Baseline(model.eval(), data, arch, notes)


def check_fits(model: nn.Module, data: DataBundle, source: str) -> None:
    """Fail early, in words, when the model cannot take the data or predict its classes."""
    inputs = data.sample_inputs(2)
    shapes = ", ".join(
        f"{n} {tuple(x.shape[1:])}" for n, x in zip(data.input_names, inputs, strict=True)
    )
    try:
        with torch.inference_mode():
            out = model(*inputs)
    except Exception as err:  # any failure here means the model cannot consume these inputs
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ShapeMismatchError(
            f"Model {source!r} cannot run on data {data.name!r}, whose examples are {shapes}: "
            f"{first}. Use a model built for these inputs (for images, check in_channels and size)."
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != data.num_classes:
        got = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ShapeMismatchError(
            f"Model {source!r} outputs {got} per example, but data {data.name!r} has "
            f"{data.num_classes} classes. Build it with num_classes: {data.num_classes} "
            "(model kwargs) or load weights trained for these classes."
        )


def _baseline(
    model: nn.Module, arch: dict[str, Any], recipe: Recipe, data: DataBundle, progress: Progress
) -> list[str]:
    config = recipe.baseline.train
    if config is None:
        if recipe.model.weights is None and not recipe.model.source.endswith(".safetensors"):
            return ["baseline is untrained (no weights, no baseline.train): chance-level accuracy"]
        return []
    key = cache.baseline_key(
        arch, {"model": recipe.model.to_dict(), "data": recipe.data.to_dict()}, config.to_dict()
    )
    if recipe.baseline.cache:
        cached = cache.load_cached(model, key)
        if cached is not None:
            model.eval()
            return [f"baseline reused from cache {key} (trained {len(cached['loss'])} epochs)"]
    with progress.task("training baseline"):
        history = train(model, data, config, progress=progress)
    if recipe.baseline.cache:
        cache.store(model, key, arch, history.to_dict())
    return [describe(history, "baseline trained", config.epochs)]


# Interleaved medians of the same model differ by a few percent run to run on a shared machine;
# a step is called slower than its input only beyond that noise.
SLOWER_MARGIN = 1.05


def _note_regressions(records: list[Measurement]) -> None:
    """Say when a step made its model slower, or removed compute without getting faster."""
    for prev, rec in itertools.pairwise(records):
        assert prev.latency is not None and rec.latency is not None
        where = (
            f"p50 {rec.latency.p50:.3f} ms on {rec.state.backend} "
            f"vs {prev.latency.p50:.3f} ms on {prev.state.backend}"
        )
        if rec.latency.p50 > prev.latency.p50 * SLOWER_MARGIN:
            rec.notes.append(f"slower than {prev.name}: {where}")
        elif (
            rec.macs < prev.macs / SLOWER_MARGIN
            and rec.latency.p50 * SLOWER_MARGIN > prev.latency.p50
        ):
            removed = 1 - rec.macs / prev.macs
            rec.notes.append(
                f"removed {removed:.0%} of {prev.name}'s MACs but is not faster: {where}"
            )
