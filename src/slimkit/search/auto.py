"""``slimkit auto``: search pruning, distillation and quantization jointly for the fastest (or
smallest) model within an accuracy budget, measured on the runtime that will serve it.

1. The baseline is prepared and measured once; per-layer sensitivity is measured once, of the
   layers the space draws on (for CNNs, one layer per channel group; it decides how a trial
   spreads the pruning, and goes into the report), and kept in slimkit's cache beside a cached
   baseline, for the next search of it (:mod:`slimkit.search.curves`).
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
   run directory, so its figures, artifacts and report are a plain run's. The models its
   trial trained are reused, not trained again; each is measured again like any step's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from slimkit import ledger
from slimkit._io import write_json, write_text
from slimkit._yaml import YamlError, load_yaml
from slimkit.data.bundle import Inputs
from slimkit.errors import RecipeError, RunDirError, StepError, UnsafeCheckpointError, quote
from slimkit.evaluation.macs import layer_macs
from slimkit.ledger import code_refs
from slimkit.models.blocks import shallower
from slimkit.models.families import find_family
from slimkit.models.resolution import runs_smaller
from slimkit.pipeline import Session
from slimkit.progress import SILENT, Progress
from slimkit.pruning.sensitivity import prunable_layers
from slimkit.pruning.vocab import token_embeddings
from slimkit.quantization.backends import CAPABILITIES
from slimkit.quantization.configs import QuantBackend
from slimkit.recipe import Recipe, steps_opt_in, with_opt_ins
from slimkit.resume import check_run_dir
from slimkit.rundir import create_run_dir
from slimkit.search.budget import Deadline
from slimkit.search.config import (
    QUANT_BACKENDS,
    STUDY,
    AutoConfig,
    AutoResult,
    Objective,
)
from slimkit.search.curves import layer_curves
from slimkit.search.selection import choose, final_message, trial_table
from slimkit.search.space import DEPTHS, RESOLUTIONS, SPACES, SpaceInputs, depth, family
from slimkit.search.trials import TrialRunner


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
    session = Session.start(recipe, progress)
    base = session.base
    with tempfile.TemporaryDirectory(prefix="slimkit-auto-") as tmp:
        baseline_state = session.baseline_state()
        base_record = session.measure(
            "baseline", "baseline", baseline_state, Path(tmp) / "baseline", base.arch
        )
        floor = base_record.accuracy - config.max_accuracy_drop
        kind = family(base.model)
        space = SPACES.get(config.space or kind)
        with progress.task("per-layer sensitivity") as task:
            example = base.data.sample_inputs(1)
            layers = space.measures(base.model, example, _sizes(base.model, example, config))
            val = base.data.val.subset(
                torch.arange(min(config.sensitivity_samples, len(base.data.val)))
            )
            curves, reused = layer_curves(base.model, val, layers, cache=recipe.baseline.cache)
            if reused:
                task.update("per-layer sensitivity reused from cache")
        sensitive = tuple(
            c.layer for c in sorted(curves, key=lambda c: -max(c.drop(r) for r in c.metric))
        )
        inputs = SpaceInputs(
            finetune=_finetune(recipe, config),
            train=_train(recipe),
            quantize=(
                "none",
                # in the space's order of preference: its corner takes the first
                *(
                    f"{mode}@{b}"
                    for b, modes in space.quantize.items()
                    if b in QUANT_BACKENDS[config.backend]
                    for mode in modes
                    if mode in CAPABILITIES[QuantBackend(b)].handlers
                ),
            ),
            sensitive=sensitive,
            curves=tuple(curves),
            depth=depth(base.model) if kind == "transformer" else 0,
            vocab=_has_token_table(base.model),
            heads_and_ffn=find_family(base.model, strict=False) is not None,
            image_size=base.data.image_size if kind == "cnn" else None,
            macs=base_record.macs,
            blocks=len(shallower(base.model, min(DEPTHS))) if kind == "cnn" else 0,
            resizable=kind == "cnn" and runs_smaller(base.model, example[0], min(RESOLUTIONS)),
        )
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
        trial_runner = TrialRunner(session, base_record, config, floor, space, inputs)
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
        "sensitivity_reused": reused,
    }
    write_json(run_dir / "search" / "trials.json", search)
    result = session.run(best, run_dir, progress, trial_runner.replayed, search=search)
    return AutoResult(run_dir, result.results, met, final_message(result.results, chosen, message))


def _refuse_code_from_the_study(
    best: Recipe, recipe: Recipe, chosen: dict[str, Any] | None
) -> None:
    """A study database is untrusted (shared over --storage, or a colleague's): the chosen
    trial's steps come from it, and must not name code or opt-ins the recipe does not."""
    foreign = sorted(set(code_refs(best)) - set(code_refs(recipe)))
    if chosen is not None and (foreign or steps_opt_in(best)):
        what = f"the factory {quote(foreign[0])}" if foreign else "an opt-in to running code"
        raise UnsafeCheckpointError(
            f"Trial {chosen['number']} in the study's database names {what}, which the recipe "
            "does not and no search space proposes: the database was edited. Running that trial "
            "would import code it names; slimkit refused. Use a study database you trust."
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


def _sizes(model: torch.nn.Module, example: Inputs, config: AutoConfig) -> dict[str, int]:
    """What pruning each Conv2d and Linear whole saves, in the objective's unit: its weights
    where the search is for size, its MACs where it is for speed (a CNN's weights sit in its
    last layers, its arithmetic in its first, at high resolution)."""
    if config.objective is Objective.SIZE:
        return dict(prunable_layers(model))
    return layer_macs(model, example)
