"""``slimkit run``, ``demo``, ``auto`` and ``report``: recipes into run directories."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from slimkit._console import progress_for
from slimkit.cli._common import (
    BatchOpt,
    Trust,
    TrustCheckpointOpt,
    TrustRemoteCodeOpt,
    console,
    print_results,
    source,
)


def _run_recipe(recipe_path: Path, out: Path | None, trust: Trust | None = None) -> None:
    from slimkit.pipeline import run
    from slimkit.recipe import Recipe

    recipe = Recipe.load(recipe_path)
    if trust is not None and trust != Trust():
        recipe = dataclasses.replace(recipe, model=recipe.model.model_copy(update=trust.apply({})))
    with progress_for(console) as progress:
        result = run(recipe, out, progress)
    if result.results:  # a data-parallel follower process measures and reports nothing
        print_results(result.results, result.run_dir)


def run_cmd(
    recipe: Annotated[
        Path | None, typer.Argument(help="YAML recipe file (not with --resume).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (new or empty).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Finish the interrupted run in this directory, reusing finished steps."),
    ] = None,
    trust_checkpoint: TrustCheckpointOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Run a recipe: baseline, then each step, measured side by side."""
    from slimkit.errors import RecipeError

    if resume is not None:
        if recipe is not None or out is not None:
            raise RecipeError(
                "--resume continues a run with the recipe it saved; give the run directory "
                "alone (slimkit run --resume RUN_DIR), without a recipe or --out."
            )
        from slimkit.pipeline import resume as resume_run

        with progress_for(console) as progress:
            result = resume_run(
                resume,
                progress,
                trust_checkpoint=trust_checkpoint,
                trust_remote_code=trust_remote_code,
            )
        print_results(result.results, result.run_dir)
        return
    if recipe is None:
        raise RecipeError("Give a recipe file (slimkit run RECIPE.yaml) or --resume RUN_DIR.")
    _run_recipe(recipe, out, Trust(trust_checkpoint, trust_remote_code))


def demo(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (new or empty).")
    ] = None,
) -> None:
    """Train a residual net on real MNIST digits, then prune, fine-tune and quantize it."""
    from importlib import resources

    with resources.as_file(resources.files("slimkit") / "recipes" / "demo.yaml") as path:
        _run_recipe(path, out)


def auto(
    recipe: Annotated[
        Path | None,
        typer.Option("--recipe", help="Model, data, baseline and evaluation (steps ignored)."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model source.")] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="Data source.")] = None,
    batch_size: BatchOpt = 1,
    max_accuracy_drop: Annotated[float, typer.Option(help="Accuracy budget, in points.")] = 1.0,
    objective: Annotated[str, typer.Option(help="latency, size or macs.")] = "latency",
    backend: Annotated[str, typer.Option(help="auto, torch or onnxruntime.")] = "auto",
    space: Annotated[
        str | None, typer.Option(help="Search space (slimkit list spaces); default: by model.")
    ] = None,
    trials: Annotated[
        int, typer.Option(min=1, help="Trials in the study, all runs together.")
    ] = 20,
    time_budget: Annotated[
        float | None,
        typer.Option(
            help="Minutes for the whole command: baseline, search, re-timing and the final run "
            "(the search stops early enough to leave time for the last two)."
        ),
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL (default: SQLite in the run dir).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the search in this run directory.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (new or empty).")
    ] = None,
    trust_checkpoint: TrustCheckpointOpt = False,
) -> None:
    """Search pruning, distillation and quantization for the fastest model within a budget."""
    from slimkit.errors import RecipeError
    from slimkit.recipe import Recipe
    from slimkit.search import AutoConfig
    from slimkit.search import auto as run_auto

    if recipe is not None:
        base = Recipe.load(recipe)
    elif model and data:
        base = Recipe.from_dict(
            {
                "name": "auto",
                "model": source(model, "--model"),
                "data": source(data, "--data"),
                "evaluation": {"batch_size": batch_size},
            }
        )
    elif resume is None:
        raise RecipeError("Give --recipe, or --model and --data (or --resume RUN_DIR).")
    else:
        base = None
    if base is not None and trust_checkpoint:
        base = dataclasses.replace(base, model=base.model.model_copy(update=Trust(True).apply({})))
    config = AutoConfig.from_dict(
        {
            "max_accuracy_drop": max_accuracy_drop,
            "objective": objective,
            "backend": backend,
            "space": space,
            "trials": trials,
            "time_budget_min": time_budget,
        },
        "slimkit auto options",
    )
    with progress_for(console) as progress:
        result = run_auto(
            base,
            config,
            out,
            storage=storage,
            resume=resume,
            progress=progress,
            trust_checkpoint=trust_checkpoint,
        )
    print_results(result.results, result.run_dir)
    style = "green" if result.met_budget else "bold yellow"
    console.print(f"[{style}]{result.message}[/]")
    console.print(f"reproduce with: slimkit run {result.run_dir / 'best-recipe.yaml'}")


def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Comparison page for several runs (must not exist)."),
    ] = None,
) -> None:
    """Re-render report.md and report.html of runs; with several, compare them side by side."""
    from slimkit._io import write_text
    from slimkit.errors import RunDirError
    from slimkit.report import render_comparison, write_reports
    from slimkit.results import load_results

    loaded = [(run, load_results(run)) for run in runs]
    for run, results in loaded:
        write_reports(run, results)
        console.print(f"rendered {run / 'report.html'}")
    if len(loaded) > 1:
        target = out or Path("comparison.html")
        if target.exists():
            raise RunDirError(f"{target} already exists; choose another --out.")
        write_text(target, render_comparison([(str(r), res) for r, res in loaded]))
        console.print(f"compared {len(loaded)} runs in {target}")
