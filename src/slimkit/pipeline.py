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
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slimkit import ledger
from slimkit._io import write_json, write_text
from slimkit.baseline import Baseline, prepare_baseline
from slimkit.data import DataBundle
from slimkit.data.files import write_split_rows
from slimkit.errors import RunDirError, RunInterrupted, StepError
from slimkit.evaluation import Measurement, measure, time_interleaved
from slimkit.ledger import code_refs
from slimkit.models.arch import Arch
from slimkit.models.graph import OnnxGraph
from slimkit.progress import SILENT, Progress, Task
from slimkit.recipe import Recipe, StepSpec, with_opt_ins
from slimkit.report import write_reports
from slimkit.results import build_results, load_results
from slimkit.resume import FOLDER as CHECKPOINTS
from slimkit.resume import StepStore, chain_key, check_run_dir
from slimkit.rundir import busy_warning, create_run_dir, environment
from slimkit.state import ModelState, runtime_for
from slimkit.steps import STEPS, StepContext
from slimkit.timing import SLOWER_MARGIN

log = logging.getLogger(__name__)

# What a caller already applied in this process, asked by the steps up to and including the one
# wanted: the state they gave, its arch and the wall time it took, or None (``slimkit auto``
# hands its chosen trial's, so the run that writes its directory does not train them again).
Applied = Callable[[Sequence[StepSpec]], "tuple[ModelState, Arch, float] | None"]


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
    run_dir = create_run_dir(recipe.name, out)
    try:
        return execute(recipe, run_dir, progress)
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir) from None


def resume(
    run_dir: str | os.PathLike[str],
    progress: Progress = SILENT,
    *,
    trust_checkpoint: bool = False,
    trust_remote_code: bool = False,
) -> RunResult:
    """Finish a run that was interrupted (Ctrl-C, a kill, a crash) in its own directory.

    The recipe is the one the run saved. Steps that finished are reused from the run's
    checkpoints when their content key and file hashes match; the interrupted step restarts,
    from its last training epoch where it trains; the rest run as usual. A run stopped after
    its results were written only has its reports rendered.

    The directory is treated as untrusted (see :mod:`slimkit.resume`): the opt-ins a saved
    recipe sets are ignored unless given again here, and a factory it names is imported only if
    this machine's ledger vouches for it, or with ``trust_checkpoint``.
    """
    path = Path(run_dir)
    recipe_file = path / "recipe.yaml"
    if not recipe_file.is_file() or recipe_file.is_symlink():
        raise RunDirError(
            f"{str(path)!r} is not a slimkit run directory (it has no recipe.yaml); "
            "--resume takes the directory an interrupted `slimkit run` printed."
        )
    check_run_dir(path)
    if (path / "results.json").exists():
        return _finish(path)
    recipe = with_opt_ins(Recipe.load(recipe_file), trust_checkpoint, trust_remote_code)
    factories = code_refs(recipe)
    ledger.check(path, factories, trusted=trust_checkpoint)
    StepStore(path, frozenset(factories), trust_checkpoint).audit()
    for scratch in (path / "artifacts").glob(".candidates-*"):
        shutil.rmtree(scratch)  # a quantize step killed mid-search left its candidates
    try:
        return execute(recipe, path, progress, resumed=True, trusted=trust_checkpoint)
    except KeyboardInterrupt:
        raise RunInterrupted(path) from None


def _finish(run_dir: Path) -> RunResult:
    """A run killed after writing results.json: drop its checkpoints, render missing reports."""
    results = load_results(run_dir)
    pending = [n for n in ("report.md", "report.html") if not (run_dir / n).is_file()]
    if not pending and not (run_dir / CHECKPOINTS).exists():
        raise RunDirError(
            f"The run in {str(run_dir)!r} already finished: its results are in results.json. "
            "Start a new run instead of resuming it."
        )
    StepStore(run_dir).clear()
    write_reports(run_dir, results)
    return RunResult(run_dir, results)


def execute(
    recipe: Recipe,
    run_dir: Path,
    progress: Progress = SILENT,
    base: Baseline | None = None,
    extra: dict[str, Any] | None = None,
    resumed: bool = False,
    trusted: bool = False,
    applied: Applied | None = None,
) -> RunResult:
    """Run ``recipe`` into the existing ``run_dir``: :func:`run` without creating the folder.

    ``base`` reuses a baseline already prepared for this recipe; ``extra`` adds sections to
    results.json (a search adds its trials). Each finished step is kept in the run's
    checkpoints until results.json is written; ``resumed`` reuses the ones already there
    (``trusted``: whatever factory their manifests name, see :class:`~slimkit.resume.StepStore`),
    and ``applied`` the steps this process already applied (see :data:`Applied`).
    """
    threads = recipe.evaluation.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed)
    factories = code_refs(recipe)
    if not resumed:
        ledger.record(run_dir, factories)
        write_text(run_dir / "recipe.yaml", recipe.to_yaml())
    env = environment(threads)
    write_json(run_dir / "environment.json", env)
    store = StepStore(run_dir, frozenset(factories), trusted)

    start = time.perf_counter()
    session = Session(recipe, base or prepare_baseline(recipe, progress, store))
    if session.data.rows is not None:  # which rows were scored, for a client without slimkit
        write_split_rows(session.data, run_dir / "split.npz")

    def measured(name: str, kind: str, done: Done) -> Measurement:
        m = session.measure(name, kind, done.state, done.stem, done.arch)
        m.wall_s, m.notes = time.perf_counter() - done.start, [*done.state.notes, *m.notes]
        return m

    state = session.baseline_state()
    first = Done(state, run_dir / "artifacts" / "00-baseline", session.base.arch, start)
    records = [measured("baseline", "baseline", first)]
    reused: list[str] = []
    steps = apply_steps(session, state, run_dir / "artifacts", progress, store, reused, applied)
    for step, done, task in steps:
        records.append(measured(step.name, step.kind, done))
        task.update(f"{done.label}: accuracy {records[-1].accuracy:.2f}%")

    references = session.references(first, run_dir / "artifacts")
    busy = busy_warning()
    session.time([*records, *references], progress)
    _note_regressions(records)
    results = build_results(recipe.to_dict(), records, run_dir, env, references)
    busy = busy or busy_warning()
    results["warnings"] = [busy] if busy else []
    if resumed:
        results["resumed"] = {"reused_steps": reused}
    results.update(extra or {})
    write_json(run_dir / "results.json", results)
    store.clear()
    write_reports(run_dir, results)
    return RunResult(run_dir, results)


@dataclass(frozen=True)
class Done:
    """A step's outcome: the new state, where its artifacts go, its arch, when it started."""

    state: ModelState
    stem: Path
    arch: Arch
    start: float
    label: str = "baseline"


@dataclass(frozen=True)
class Session:
    """A recipe's prepared baseline and its evaluation settings: how a run, and a search over
    the recipe's steps, apply a step and measure a model, all the same way.

    >>> session = Session.start(Recipe.load("recipes/demo.yaml"))  # doctest: +SKIP
    >>> before = session.measure("baseline", "baseline", session.baseline_state(), stem, arch)
    ... # doctest: +SKIP
    """

    recipe: Recipe
    base: Baseline

    @classmethod
    def start(
        cls, recipe: Recipe, progress: Progress = SILENT, store: StepStore | None = None
    ) -> Session:
        """Prepare ``recipe``'s baseline (see :func:`~slimkit.baseline.prepare_baseline`)."""
        return cls(recipe, prepare_baseline(recipe, progress, store))

    @property
    def data(self) -> DataBundle:
        return self.base.data

    def baseline_state(self) -> ModelState:
        """The baseline as the first state of a run, served on the recipe's runtime."""
        runtime = runtime_for(self.base.model, self.recipe.evaluation.runtime)
        return ModelState(self.base.model, runtime, notes=self.base.notes)

    def context(
        self,
        stem: Path,
        arch: Arch,
        progress: Progress = SILENT,
        checkpoint_dir: Path | None = None,
    ) -> StepContext:
        """What a step gets besides the model."""
        return StepContext(
            self.base.data,
            stem,
            progress,
            self.recipe.seed,
            self.recipe.evaluation.batch_size,
            arch,
            baseline=self.base.model,
            checkpoint_dir=checkpoint_dir,
        )

    def apply(self, step: StepSpec, state: ModelState, ctx: StepContext) -> ModelState:
        """Apply one step to a copy of ``state``'s model (the input state is left as it was).

        The global generator is seeded first, so a step gives the same model whatever ran
        before it (a fresh student's initial weights come from it): a search's trial, the recipe
        that reproduces it and a resumed run reach each step with it in different states.
        """
        kind = STEPS.get(step.kind)
        if isinstance(state.module, OnnxGraph) and not kind.takes_graph:
            takes = [s.name for s in STEPS.values() if s.takes_graph]
            raise StepError(
                f"Step {step.name!r} ({step.kind}) changes PyTorch weights, but the model is the "
                f"ONNX graph {state.module.path}. An ONNX graph can be evaluated, benchmarked "
                f"and given the steps {', '.join(takes)}; to {step.kind} it, start from the "
                "PyTorch model the graph was exported from."
            )
        torch.manual_seed(ctx.seed)
        given = ModelState(copy.deepcopy(state.module), state.runtime)
        return kind.apply(given, step.config, ctx)

    def measure(
        self, name: str, kind: str, state: ModelState, stem: Path, arch: Arch
    ) -> Measurement:
        """Measure ``state`` (all but latency) as the recipe's evaluation settings say."""
        ev = self.recipe.evaluation
        return measure(
            name,
            kind,
            state,
            self.base.data,
            artifact_stem=stem,
            arch=arch,
            batch_size=ev.batch_size,
            metrics=ev.metrics,
        )

    def references(self, baseline: Done, root: Path) -> list[Measurement]:
        """The baseline served on each of ``evaluation.baseline_runtimes`` other than its own
        (``baseline@openvino``, ...), for a speedup against the baseline's fastest runtime."""
        out = []
        for runtime in self.recipe.evaluation.baseline_runtimes:
            if runtime == baseline.state.runtime:
                continue
            start = time.perf_counter()
            state = ModelState(self.base.model, runtime)
            stem = root / f"00-baseline-{runtime}"
            m = self.measure(f"baseline@{runtime}", "reference", state, stem, baseline.arch)
            m.wall_s = time.perf_counter() - start
            out.append(m)
        return out

    def time(self, records: list[Measurement], progress: Progress = SILENT) -> None:
        """Time ``records`` together, interleaved, as the recipe's evaluation settings say."""
        ev = self.recipe.evaluation
        time_interleaved(
            records,
            self.base.data,
            batch_size=ev.batch_size,
            warmup=ev.warmup,
            rounds=ev.rounds,
            per_round=ev.per_round,
            progress=progress,
        )

    def run(
        self,
        recipe: Recipe,
        run_dir: Path,
        progress: Progress = SILENT,
        applied: Applied | None = None,
        **extra: Any,
    ) -> RunResult:
        """Run ``recipe`` (this one's baseline with other steps) into the existing ``run_dir``
        from this baseline, reusing the steps ``applied`` holds; ``extra`` adds sections to
        results.json."""
        return execute(recipe, run_dir, progress, base=self.base, extra=extra, applied=applied)


def apply_steps(
    session: Session,
    state: ModelState,
    root: Path,
    progress: Progress,
    store: StepStore | None = None,
    reused: list[str] | None = None,
    applied: Applied | None = None,
) -> Iterator[tuple[StepSpec, Done, Task]]:
    """Apply the recipe's steps in order, each to a copy of the previous model.

    Yields inside each step's progress task, so the caller can measure before it closes. With
    a ``store``, each finished step is kept there, and a step it already holds under the same
    key is reused (its name appended to ``reused``) instead of applied again; so is one that
    ``applied`` holds.
    """
    arch, model_key, steps = session.base.arch, session.base.key, session.recipe.steps
    for i, step in enumerate(steps, 1):
        stem = root / f"{i:02d}-{step.name}"
        label = f"step {i}/{len(steps)}: {step.name}"
        key = chain_key(model_key, step.to_dict())
        with progress.task(f"{label} ({step.kind})") as task:
            start = time.perf_counter()
            kept = store.load(stem.name, key) if store is not None else None
            earlier = applied(steps[:i]) if kept is None and applied is not None else None
            if kept is not None:
                state, arch, start = kept.state, kept.arch, start - kept.wall_s
                if reused is not None:
                    reused.append(step.name)
            elif earlier is not None:
                state, arch, wall_s = earlier
                start -= wall_s
                if store is not None:
                    kept = store.save(stem.name, key, state, arch, wall_s)
            else:
                where = store.training_dir(stem.name, key) if store is not None else None
                ctx = session.context(stem, arch, progress, where)
                state = session.apply(step, state, ctx)
                arch = state.arch or arch
                if store is not None:
                    kept = store.save(stem.name, key, state, arch, time.perf_counter() - start)
            model_key = chain_key(key, {"model": kept.digest}) if kept is not None else key
            yield step, Done(state, stem, arch, start, label), task


def _follow(recipe: Recipe) -> RunResult:
    """A non-main process of a data-parallel launch: the same baseline and steps in step with
    rank 0 (their training is collective), measuring nothing and writing no run directory."""
    torch.manual_seed(recipe.seed)
    session = Session.start(recipe)
    state = session.baseline_state()
    with tempfile.TemporaryDirectory(prefix="slimkit-follower-") as tmp:
        for _ in apply_steps(session, state, Path(tmp), SILENT):
            pass
        return RunResult(Path(tmp), {})


def _note_regressions(records: list[Measurement]) -> None:
    """Say when a step made its model slower, or removed compute without getting faster."""
    for prev, rec in itertools.pairwise(records):
        assert prev.latency is not None and rec.latency is not None
        where = (
            f"p50 {rec.latency.p50:.3f} ms on {rec.state.runtime} "
            f"vs {prev.latency.p50:.3f} ms on {prev.state.runtime}"
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
