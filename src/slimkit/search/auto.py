"""``slimkit auto``: search pruning, distillation and quantization jointly for the fastest (or
smallest) model within an accuracy budget, measured on the runtime that will serve it.

1. The baseline is prepared and measured once; per-layer sensitivity is measured once (it
   decides which layers a trial may keep whole, and goes into the report).
2. Optuna (TPE with the accuracy budget as a constraint) draws recipe steps from the model
   family's search space, starting from the space's most compressed corner. Each step is
   applied and measured like a pipeline step (or reused, where an earlier trial of this
   process applied the same step to the same model: steps are seeded, so it would come out
   the same), its latency timed interleaved with the model before it; a compressing step that
   does not pay for itself on the serving runtime (slower, or no gain on the objective; for
   latency, a step that is as fast and smaller also pays, since size is the other half of the
   result) is rolled back and noted. A trial whose
   trained model is already below the budget is pruned before quantization.
3. Trials live in an Optuna RDB (SQLite in the run directory by default, any URL with
   ``storage``), so a search resumes, and several machines can share one study.
4. The few best trials within budget run in this process are timed again, side by side with
   the baseline in one interleaved session: each trial was timed at its own moment of a noisy
   machine, and the choice must not go to the one timed in a quiet minute. Trials within 5% of
   the best on the objective count as tied, and the smaller (for latency) or faster one wins.
5. The chosen trial becomes ``best-recipe.yaml`` and is run by the ordinary pipeline into the
   run directory, so its figures, artifacts and report are a plain run's.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import Field

from slimkit import ledger
from slimkit._io import write_json, write_text
from slimkit._yaml import YamlError, load_yaml
from slimkit.config import Config
from slimkit.distillation.step import DistillStepConfig
from slimkit.errors import RecipeError, RunDirError, StepError, UnsafeCheckpointError, quote
from slimkit.evaluation import Measurement
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.ledger import code_refs
from slimkit.models.surgery import layer_list
from slimkit.pipeline import (
    SLOWER_MARGIN,
    apply_step,
    execute,
    measure_as,
    prepare_baseline,
    step_context,
    time_as,
    with_opt_ins,
)
from slimkit.progress import SILENT, Progress
from slimkit.pruning.sensitivity import LayerSensitivity, layer_sensitivity
from slimkit.pruning.vocab import token_embeddings
from slimkit.recipe import Recipe, StepSpec
from slimkit.results import points
from slimkit.resume import check_run_dir
from slimkit.rundir import create_run_dir
from slimkit.search.budget import Deadline
from slimkit.search.pareto import pareto_front
from slimkit.search.space import SPACES, Space, SpaceInputs, family
from slimkit.state import ModelState

TRAINING = ("finetune", "distill")


def compresses(spec: StepSpec) -> bool:
    """Whether a step makes the model smaller or faster (and so must pay for itself): pruning,
    quantization, distillation into a new student. Distilling into the current model is
    recovery training, judged by accuracy like fine-tuning."""
    if isinstance(spec.config, DistillStepConfig):
        return not spec.config.student.current
    return spec.kind in ("prune", "quantize")


STUDY = "slimkit-auto"
FINALISTS = 3  # trials within budget re-timed side by side before one is chosen
REUSED_STEPS = 8  # applied steps kept in memory for later trials that begin alike


class Objective(StrEnum):
    LATENCY = "latency"  # p50 on the serving runtime, at the recipe's evaluation batch size
    SIZE = "size"  # bytes on disk of what the runtime loads
    MACS = "macs"


class BackendChoice(StrEnum):
    AUTO = "auto"  # try ONNX Runtime and torchao (compiled) and keep what measures best
    TORCH = "torch"
    ONNXRUNTIME = "onnxruntime"


_QUANT_BACKENDS = {
    BackendChoice.AUTO: ("onnxruntime", "torchao"),
    BackendChoice.TORCH: ("torchao",),
    BackendChoice.ONNXRUNTIME: ("onnxruntime",),
}
# What a family's trials may quantize with, per backend: int8 activations where int8 kernels
# pay; for CNNs also int8 weights over float kernels, which win on layers too narrow to fill
# int8 vector registers (a heavily pruned net at batch 1).
_QUANT_MODES: dict[str, dict[str, tuple[str, ...]]] = {
    "cnn": {"onnxruntime": ("static-int8", "weight-only-int8"), "torchao": ("static-int8",)},
    "transformer": {"onnxruntime": ("dynamic-int8",), "torchao": ("dynamic-int8",)},
}


class AutoConfig(Config):
    """What to optimise, within which accuracy budget, for how long."""

    max_accuracy_drop: float = Field(1.0, ge=0.0, le=100.0, description="Points of accuracy.")
    objective: Objective = Objective.LATENCY
    backend: BackendChoice = BackendChoice.AUTO
    trials: int = Field(20, ge=1, le=100_000)
    time_budget_min: float | None = Field(None, gt=0.0)
    finetune_epochs: int | None = Field(None, ge=1, description="Default: 40% of the baseline's.")
    sensitivity_samples: int = Field(256, ge=16)
    seed: int = 0


@dataclass(frozen=True)
class AutoResult:
    """Where the search landed, its results (with a ``search`` section), and the verdict."""

    run_dir: Path
    results: dict[str, Any]
    met_budget: bool
    message: str


def auto(
    recipe: Recipe | None,
    config: AutoConfig,
    out: str | Path | None = None,
    *,
    storage: str | None = None,
    resume: Path | None = None,
    progress: Progress = SILENT,
    trust_checkpoint: bool = False,
) -> AutoResult:
    """Search for the best model within ``config``'s budget; see the module docstring.

    ``recipe`` gives the model, data, baseline and evaluation (its steps are ignored). With
    ``resume`` (a run directory of an earlier search) the study continues where it stopped;
    that directory is untrusted like any resumed run's (:func:`slimkit.pipeline.resume`), and
    ``trust_checkpoint`` is the opt-in that lets its recipe run a factory this machine's ledger
    does not vouch for.

    >>> demo = Recipe.load("recipes/demo.yaml")  # doctest: +SKIP
    >>> result = slimkit.auto(demo, AutoConfig(trials=30))  # doctest: +SKIP
    """
    import optuna

    deadline = Deadline(config.time_budget_min * 60) if config.time_budget_min else None
    if resume is not None:
        run_dir = Path(resume)
        recipe, config, storage = _load_search(run_dir, storage, config)
        recipe = with_opt_ins(recipe, trust_checkpoint, trust_remote_code=False)
        ledger.check(run_dir, code_refs(recipe), trusted=trust_checkpoint)
    elif recipe is None:
        raise RecipeError(
            "slimkit auto needs a recipe (model, data, baseline) or a search to resume."
        )
    else:
        run_dir = create_run_dir(f"auto-{recipe.name}", out)
        storage = storage or _own_storage(run_dir)
        (run_dir / "search").mkdir()
        ledger.record(run_dir, code_refs(recipe))
        write_text(
            run_dir / "search" / "auto.yaml",
            yaml.safe_dump(
                {"recipe": recipe.to_dict(), "config": config.to_dict(), "storage": storage},
                sort_keys=False,
            ),
        )
    base = prepare_baseline(recipe, progress)
    with tempfile.TemporaryDirectory(prefix="slimkit-auto-") as tmp:
        baseline_state = ModelState(base.model, recipe.evaluation.backend)
        base_record = measure_as(
            recipe,
            base.data,
            "baseline",
            "baseline",
            baseline_state,
            Path(tmp) / "baseline",
            base.arch,
        )
        floor = base_record.accuracy - config.max_accuracy_drop
        with progress.task("per-layer sensitivity"):
            curves = _sensitivity(base, config.sensitivity_samples)
        kind = family(base.model)
        prunable = [  # for CNNs, the convolutions: what channel pruning acts on
            c
            for c in curves
            if kind != "cnn" or isinstance(base.model.get_submodule(c.layer), torch.nn.Conv2d)
        ]
        sensitive = tuple(
            c.layer for c in sorted(prunable, key=lambda c: -max(c.drop(r) for r in c.metric))
        )
        inputs = SpaceInputs(
            finetune=_finetune(recipe, config),
            train=_train(recipe),
            quantize=(
                "none",
                *(
                    f"{mode}@{b}"
                    for b in _QUANT_BACKENDS[config.backend]
                    for mode in _QUANT_MODES[kind][b]
                ),
            ),
            sensitive=sensitive,
            curves=tuple(prunable),
            depth=len(layer_list(base.model)[1]) if kind == "transformer" else 0,
            vocab=_has_token_table(base.model),
            image_size=base.data.image_size if kind == "cnn" else None,
        )
        space = SPACES.get(kind)
        sampler = optuna.samplers.TPESampler(seed=config.seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            storage=storage,
            study_name=STUDY,
            direction="minimize",
            sampler=sampler,
            load_if_exists=True,
        )
        if not study.trials:  # a new study (a resumed one already tried the corner)
            study.enqueue_trial(space.corner(inputs))
        done = sum(t.state.is_finished() for t in study.trials)
        trial_runner = _TrialRunner(recipe, base, base_record, config, floor, space, inputs)
        out_of_time = deadline is not None and deadline.search_left() <= 0
        if config.trials > done and not out_of_time:
            with progress.task(
                f"searching ({config.trials - done} trials)", total=config.trials - done
            ) as task:
                callbacks: list[Callable[[Any, Any], None]] = [lambda _s, _t: task.advance()]
                if deadline is not None:
                    deadline.searching()
                    callbacks.append(deadline.after_trial)
                study.optimize(
                    trial_runner,
                    n_trials=config.trials - done,
                    timeout=deadline.search_left() if deadline is not None else None,
                    catch=(Exception,),  # recorded as FAIL with its note; the search goes on
                    callbacks=callbacks,
                )
    retimed = trial_runner.retime()
    trials = trial_table(study, retimed)
    chosen, met, message = choose(trials, config, base_record.accuracy)
    if out_of_time:
        assert deadline is not None
        message += (
            f" The time budget was spent before the search started: preparing the baseline and "
            f"its sensitivity took {deadline.elapsed() / 60:.1f} min."
        )
    best = Recipe.from_dict(
        {
            **recipe.to_dict(),
            "name": f"{recipe.name}-auto",
            "steps": chosen["steps"] if chosen else [],
        }
    )
    _refuse_code_from_the_study(best, recipe, chosen)
    write_text(run_dir / "best-recipe.yaml", best.to_yaml())
    search = {
        "objective": config.objective.value,
        "max_accuracy_drop": config.max_accuracy_drop,
        "accuracy_floor": floor,
        "met_budget": met,
        "message": message,
        "chosen_trial": chosen["number"] if chosen else None,
        "retimed": sorted(retimed),
        "storage": storage if not storage.startswith("sqlite:///") else "search/search.db",
        "trials": trials,
        "sensitivity": {c.layer: {str(r): c.drop(r) for r in c.metric} for c in curves},
    }
    write_json(run_dir / "search" / "trials.json", search)
    result = execute(best, run_dir, progress, base=base, extra={"search": search})
    return AutoResult(run_dir, result.results, met, final_message(result.results, chosen, message))


def _refuse_code_from_the_study(
    best: Recipe, recipe: Recipe, chosen: dict[str, Any] | None
) -> None:
    """A study database is untrusted (shared over --storage, or a colleague's): the chosen
    trial's steps come from it, and must not name code or opt-ins the recipe does not."""
    foreign = sorted(set(code_refs(best)) - set(code_refs(recipe)))
    steps = json.dumps([s.to_dict() for s in best.steps])
    opted_in = '"trust_checkpoint": true' in steps or '"trust_remote_code": true' in steps
    if chosen is not None and (foreign or opted_in):
        what = f"the factory {quote(foreign[0])}" if foreign else "an opt-in to running code"
        raise UnsafeCheckpointError(
            f"Trial {chosen['number']} in the study's database names {what}, which the recipe "
            "does not and no search space proposes: the database was edited. Running that trial "
            "would import code it names; slimkit refused. Use a study database you trust."
        )


def final_message(
    results: dict[str, Any], chosen: dict[str, Any] | None, search_message: str
) -> str:
    """The verdict as the final run measured it; the search's own figures came from trials
    timed at their own moments, so they are quoted only as such."""
    if chosen is None:
        return search_message
    s = results["summary"]
    return (
        f"trial {chosen['number']}, run again: {s['speedup']:.2f}x faster, "
        f"{s['compression']:.2f}x smaller, {points(s['accuracy_drop'])} vs the baseline "
        f"(the search measured {chosen['speedup']:.2f}x faster). Search: {search_message}"
    )


def _load_search(
    run_dir: Path, storage: str | None, config: AutoConfig
) -> tuple[Recipe, AutoConfig, str]:
    """The recipe and storage of the search in ``run_dir``; its settings, with ``trials`` and
    the time budget taken from ``config`` (a resumed search may run longer)."""
    saved = run_dir / "search" / "auto.yaml"
    if not saved.is_file() or saved.is_symlink():
        raise RunDirError(
            f"{str(run_dir)!r} holds no search to resume (no search/auto.yaml). "
            "Give the run directory an earlier slimkit auto wrote."
        )
    check_run_dir(run_dir)
    try:
        data = load_yaml(saved)
    except YamlError as err:
        raise RunDirError(f"{saved} {err}.") from None
    if not isinstance(data, dict) or not {"recipe", "config", "storage"} <= set(data):
        raise RunDirError(f"{saved} does not hold a search (recipe, config, storage).")
    recipe = Recipe.from_dict(data["recipe"], str(saved))
    saved_config = AutoConfig.from_dict(data["config"], str(saved))
    resumed = saved_config.model_copy(
        update={"trials": config.trials, "time_budget_min": config.time_budget_min}
    )
    own = _own_storage(run_dir)
    if storage is None and data["storage"] != own:
        # The file is untrusted: it must not point the search at a database elsewhere.
        raise RunDirError(
            f"{saved} names the study storage {quote(data['storage'])}, not this run's own "
            "search/search.db; a resumed search opens another database only when asked. "
            "Pass it with --storage if it is the study you mean to continue."
        )
    return recipe, resumed, storage or own


def _own_storage(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'search' / 'search.db').resolve()}"


def _has_token_table(model: torch.nn.Module) -> bool:
    """Whether ``model`` has a token embedding table that vocabulary trimming can act on."""
    try:
        token_embeddings(model)
    except StepError:
        return False
    return True


def _train(recipe: Recipe) -> dict[str, Any]:
    """The baseline's training settings (a plain default where the baseline was not trained)."""
    train = recipe.baseline.train
    return train.to_dict() if train is not None else {"lr": 1e-3}


def _finetune(recipe: Recipe, config: AutoConfig) -> dict[str, Any]:
    """Recovery training: the baseline's settings with fewer epochs."""
    settings = _train(recipe)
    epochs = config.finetune_epochs or max(1, round(settings.get("epochs", 5) * 0.4))
    return {**settings, "epochs": epochs}


def _sensitivity(base: Any, samples: int) -> list[LayerSensitivity]:
    """Accuracy drop with one Conv2d/Linear at a time magnitude-pruned, on validation data."""
    val = base.data.val.subset(torch.arange(min(samples, len(base.data.val))))

    def evaluate(model: torch.nn.Module) -> float:
        with torch.inference_mode():
            return accuracy(*predict(lambda x: model(*x), val.batches(64)))

    return layer_sensitivity(base.model, evaluate, ratios=(0.5, 0.8))


def pays(objective: Objective, m: Measurement, prev: Measurement) -> bool:
    """Whether a compressing step that turned ``prev`` into ``m`` is worth keeping.

    It must not be slower (beyond timing noise) and must gain on the objective; under
    ``latency`` a step that is as fast and at least 5% smaller pays too.
    """
    assert m.latency is not None and prev.latency is not None
    slower = m.latency.p50 > prev.latency.p50 * SLOWER_MARGIN
    if objective is Objective.LATENCY:
        faster = m.latency.p50 * SLOWER_MARGIN < prev.latency.p50
        return faster or (not slower and m.size_bytes * SLOWER_MARGIN < prev.size_bytes)
    if objective is Objective.SIZE:
        return not slower and m.size_bytes < prev.size_bytes
    return not slower and m.macs < prev.macs


@dataclass(frozen=True)
class _Applied:
    """One step as a trial applied it: the model it gave, measured, and whether it paid."""

    state: ModelState
    arch: dict[str, Any]
    measured: Measurement
    paid: bool
    trial: int


class _TrialRunner:
    """Applies and measures one trial's steps; the callable Optuna optimises."""

    def __init__(
        self,
        recipe: Recipe,
        base: Any,
        base_record: Measurement,
        config: AutoConfig,
        floor: float,
        space: Space,
        inputs: SpaceInputs,
    ) -> None:
        self.recipe, self.base, self.base_record = recipe, base, base_record
        self.config, self.floor, self.space, self.inputs = config, floor, space, inputs
        # trial number -> (objective value, final model) of the best trials within budget
        self.finalists: dict[int, tuple[float, Measurement]] = {}
        # the steps kept so far plus the next one -> what applying it gave, and whether it paid
        self.applied: OrderedDict[str, _Applied] = OrderedDict()

    def __call__(self, trial: Any) -> float:
        steps = self.space.draw(trial, self.inputs)
        try:
            with tempfile.TemporaryDirectory(prefix="slimkit-trial-") as tmp:
                return self._run(trial, steps, Path(tmp))
        except Exception as err:  # one failing combination must not end a long search
            trial.set_user_attr("notes", [f"failed: {type(err).__name__}: {err}"])
            raise

    def _run(self, trial: Any, steps: list[dict[str, Any]], root: Path) -> float:
        import optuna

        candidate = Recipe.from_dict({**self.recipe.to_dict(), "steps": steps})
        ev = self.recipe.evaluation
        state, arch, prev = (
            ModelState(self.base.model, ev.backend),
            self.base.arch,
            self.base_record,
        )
        kept: list[dict[str, Any]] = []
        notes: list[str] = []
        timed = False  # whether ``prev`` was timed beside the baseline in this trial
        for i, spec in enumerate(candidate.steps, 1):
            key = json.dumps([*kept, spec.to_dict()], sort_keys=True, default=str)
            done = self.applied.get(key)
            if done is None:
                stem = root / f"{i:02d}-{spec.name}"
                done = self._apply(trial.number, candidate, spec, state, arch, prev, stem)
                if done.state.artifact is None:  # a written artifact lives in this trial's folder
                    self._remember(key, done)
            else:
                notes.append(f"{spec.name} reused from trial {done.trial}")
            reused = done.trial != trial.number
            if not done.paid:
                notes.append(f"rolled back {spec.name}: {self._describe(done.measured, prev)}")
                timed = timed or not reused  # applied here: timed with the baseline and prev
                continue
            kept.append(spec.to_dict())
            state, arch, prev = done.state, done.arch, done.measured
            timed = not reused
            if spec.kind in TRAINING and prev.accuracy < self.floor:
                self._record(trial, kept, prev, notes)
                raise optuna.TrialPruned(
                    f"accuracy {prev.accuracy:.2f}% after {spec.name} is below the budget's "
                    f"{self.floor:.2f}%"
                )
        if not timed:  # the baseline alone, or a model reused from a trial timed at another time
            models = [self.base_record] if prev is self.base_record else [self.base_record, prev]
            time_as(candidate, models, self.base.data)
        value = self._record(trial, kept, prev, notes)
        if prev is not self.base_record and prev.accuracy >= self.floor - 1e-9:
            self._keep_finalist(trial.number, value, prev)
        return value

    def _apply(
        self,
        number: int,
        candidate: Recipe,
        spec: StepSpec,
        state: ModelState,
        arch: dict[str, Any],
        prev: Measurement,
        stem: Path,
    ) -> _Applied:
        """Apply one step to ``state``, measure it, time it beside the model before it (and
        the baseline), and judge whether it pays."""
        ctx = step_context(candidate, self.base, stem, arch, SILENT)
        new = apply_step(spec, state, ctx)
        arch_after = new.arch or arch
        m = measure_as(
            candidate, self.base.data, spec.name, spec.kind, new, ctx.artifact_stem, arch_after
        )
        records = [self.base_record, prev, m] if prev is not self.base_record else [prev, m]
        time_as(candidate, records, self.base.data)
        paid = not compresses(spec) or pays(self.config.objective, m, prev)
        return _Applied(new, arch_after, m, paid, number)

    def _remember(self, key: str, done: _Applied) -> None:
        self.applied[key] = done
        if len(self.applied) > REUSED_STEPS:
            self.applied.popitem(last=False)

    def _keep_finalist(self, number: int, value: float, model: Measurement) -> None:
        self.finalists[number] = (value, model)
        if len(self.finalists) > FINALISTS:
            del self.finalists[max(self.finalists, key=lambda n: self.finalists[n][0])]

    def retime(self) -> dict[int, dict[str, float]]:
        """The finalists timed again in one interleaved session with the baseline: their new
        ``latency_ms`` and ``speedup`` (and, under ``latency``, ``objective``) by trial."""
        if len(self.finalists) < 2:
            return {}
        renamed = {
            n: dataclasses.replace(m, name=f"trial-{n}") for n, (_, m) in self.finalists.items()
        }
        time_as(self.recipe, [self.base_record, *renamed.values()], self.base.data)
        assert self.base_record.latency is not None
        base_p50 = self.base_record.latency.p50
        retimed = {}
        for n, m in renamed.items():
            assert m.latency is not None
            figures = {"latency_ms": m.latency.p50, "speedup": base_p50 / m.latency.p50}
            if self.config.objective is Objective.LATENCY:
                figures["objective"] = m.latency.p50 / base_p50
            retimed[n] = figures
        return retimed

    @staticmethod
    def _describe(m: Measurement, prev: Measurement) -> str:
        assert m.latency is not None and prev.latency is not None
        return (
            f"{m.latency.p50:.4g} vs {prev.latency.p50:.4g} ms, "
            f"{m.size_bytes:,} vs {prev.size_bytes:,} bytes on {m.state.backend}"
        )

    def _record(
        self, trial: Any, kept: list[dict[str, Any]], last: Measurement, notes: list[str]
    ) -> float:
        base = self.base_record
        assert last.latency is not None and base.latency is not None
        ratios = {
            Objective.LATENCY: last.latency.p50 / base.latency.p50,
            Objective.SIZE: last.size_bytes / base.size_bytes,
            Objective.MACS: last.macs / max(base.macs, 1),
        }
        drop = base.accuracy - last.accuracy
        for key, value in {
            "steps": kept,
            "accuracy": last.accuracy,
            "accuracy_drop": drop,
            "latency_ms": last.latency.p50,
            "speedup": base.latency.p50 / last.latency.p50,
            "size_bytes": last.size_bytes,
            "compression": base.size_bytes / last.size_bytes,
            "macs": last.macs,
            "backend": last.state.backend,
            "notes": notes,
            "constraint": drop - self.config.max_accuracy_drop,
        }.items():
            trial.set_user_attr(key, value)
        # feasible at <= 0: TPE models the accuracy budget as a constraint
        trial.set_constraint("accuracy_budget", drop - self.config.max_accuracy_drop)
        return ratios[self.config.objective]


def trial_table(
    study: Any, retimed: dict[int, dict[str, float]] | None = None
) -> list[dict[str, Any]]:
    """Every trial as a plain record, Pareto membership marked (accuracy up, latency and size
    down, over the trials that finished). A re-timed trial carries its new figures, and the
    search's under ``timed_in_search``."""
    rows = []
    for t in study.trials:
        row = {
            "number": t.number,
            "state": t.state.name,
            "params": dict(t.params),
            "objective": t.value if t.value is not None else None,
            **t.user_attrs,
        }
        again = (retimed or {}).get(t.number)
        if again:
            row["timed_in_search"] = {k: row[k] for k in again}
            row.update(again)
        rows.append(row)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    points = [(-r["accuracy"], 1.0 / r["speedup"], r["size_bytes"]) for r in complete]
    for r, on_front in zip(complete, pareto_front(points), strict=True):
        r["pareto"] = on_front
    return rows


# What decides between trials tied on the objective: the other half of the result.
_TIEBREAK = {
    Objective.LATENCY: "size_bytes",
    Objective.SIZE: "latency_ms",
    Objective.MACS: "latency_ms",
}


def choose(
    trials: list[dict[str, Any]], config: AutoConfig, base_accuracy: float
) -> tuple[dict[str, Any] | None, bool, str]:
    """The best finished trial within budget; else the most accurate one, and why.

    Trials within ``SLOWER_MARGIN`` (5%) of the best objective are tied, as a step within it
    is no faster when it is timed: of those, the smaller (under ``latency``) or the faster
    (under ``size`` and ``macs``) wins, then the more accurate.
    """
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    feasible = [t for t in complete if t["constraint"] <= 1e-9]
    if feasible:
        top = min(t["objective"] for t in feasible)
        tied = [t for t in feasible if t["objective"] <= top * SLOWER_MARGIN]
        best = min(tied, key=lambda t: (t[_TIEBREAK[config.objective]], -t["accuracy"]))
        return (
            best,
            True,
            (
                f"trial {best['number']}: {best['speedup']:.2f}x faster, "
                f"{best['compression']:.2f}x smaller, {points(best['accuracy_drop'])} "
                f"(budget {config.max_accuracy_drop:g}), of {len(complete)} finished trials"
            ),
        )
    if not complete:
        return (
            None,
            False,
            (
                f"No trial finished ({len(trials)} started); the baseline is reported as is. "
                "Raise --trials or --time-budget."
            ),
        )
    best = max(complete, key=lambda t: t["accuracy"])
    return (
        best,
        False,
        (
            f"No trial kept accuracy within {config.max_accuracy_drop:g} points of the baseline "
            f"({base_accuracy:.2f}%); the most accurate, trial {best['number']}, lost "
            f"{best['accuracy_drop']:.2f}. Raise --max-accuracy-drop, or --trials / --time-budget."
        ),
    )
