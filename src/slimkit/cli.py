"""The ``slimkit`` command: parse arguments, build library objects, call the library, print.

Every error slimkit raises on purpose is printed as one paragraph with exit status 2.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from slimkit._console import progress_for, quiet_libraries
from slimkit.pruning.sensitivity import DEFAULT_RATIOS

app = typer.Typer(
    help="Make trained PyTorch models smaller and faster, and measure every trade-off.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped or under make, rich would assume 80 columns and cut the table; use a report width there.
console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Model source: see `slimkit list forms`.")
]
DataOpt = Annotated[
    str, typer.Option("--data", "-d", help="Data source: see `slimkit list forms`.")
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", "-w", help="Weights to load: .safetensors or a checkpoint."),
]
BatchOpt = Annotated[
    int, typer.Option("--batch-size", "-b", min=1, max=65_536, help="Batch size for timing.")
]
TrustCheckpointOpt = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        help="Trust the files this command reads to run code: a weights checkpoint that needs "
        "full unpickling, a saved model built by a factory, a resumed run directory made "
        "elsewhere. Only for files you trust.",
    ),
]
TrustRemoteCodeOpt = Annotated[
    bool,
    typer.Option(
        "--trust-remote-code",
        help="Let a Hugging Face directory run the Python code it ships: only if you trust it.",
    ),
]


@dataclass(frozen=True)
class Trust:
    """The user's explicit opt-ins to loading that can run code from a file."""

    checkpoint: bool = False
    remote_code: bool = False

    def apply(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``spec`` (a model mapping) with the opt-ins the user gave switched on."""
        return {
            **spec,
            **({"trust_checkpoint": True} if self.checkpoint else {}),
            **({"trust_remote_code": True} if self.remote_code else {}),
        }


def _model_and_data(
    model: str, data: str, weights: Path | None, trust: Trust
) -> tuple[Any, Any, dict[str, Any]]:
    from slimkit.data import load_data
    from slimkit.models import ModelSpec, arch_of, build_model, load_tokenizer_for
    from slimkit.pipeline import check_fits

    spec = ModelSpec.parse(
        trust.apply({"source": model, "weights": str(weights) if weights else None})
    )
    bundle = load_data(data, load_tokenizer_for(spec))
    hints = {
        k: v
        for k, v in (("num_classes", bundle.num_classes), ("in_channels", bundle.in_channels))
        if v is not None
    }
    net = build_model(spec, **hints)
    check_fits(net, bundle, model)
    return net, bundle, arch_of(spec, hints)


def _print_results(results: dict[str, Any], run_dir: Path) -> None:
    from slimkit.report.markdown import COMPACT, HEADERS, step_rows
    from slimkit.results import points

    table = Table(title=f"slimkit run {results['recipe']['name']}", title_justify="left")
    keep = [HEADERS.index(h) for h in COMPACT]
    for h in COMPACT:
        table.add_column(h, justify="left" if h in ("step", "backend") else "right", no_wrap=True)
    for row in step_rows(results):
        table.add_row(*(row[i] for i in keep))
    console.print(table)
    s = results["summary"]
    colour = "green" if s["speedup"] >= 1 and s["compression"] >= 1 else "yellow"
    console.print(
        f"[bold {colour}]{s['final']}: {s['speedup']:.2f}x faster, "
        f"{s['compression']:.2f}x smaller, "
        f"{points(s['accuracy_drop'])}[/] vs {s['baseline']} "
        f"(batch {results['steps'][0]['batch_size']}, {results['environment']['threads']} threads)"
    )
    for warning in results.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {warning}")
    for step in results["steps"]:
        for note in step["notes"]:
            console.print(f"  [dim]{step['name']}:[/] {note}")
    console.print(f"Run directory: [bold]{run_dir}[/] (results.json, report.md, artifacts/)")


def _run_recipe(recipe_path: Path, out: Path | None, trust: Trust = Trust()) -> None:
    from slimkit.pipeline import run
    from slimkit.recipe import Recipe

    recipe = Recipe.load(recipe_path)
    if trust != Trust():
        recipe = dataclasses.replace(recipe, model=recipe.model.model_copy(update=trust.apply({})))
    with progress_for(console) as progress:
        result = run(recipe, out, progress)
    if result.results:  # a data-parallel follower process measures and reports nothing
        _print_results(result.results, result.run_dir)


@app.command("run")
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
        _print_results(result.results, result.run_dir)
        return
    if recipe is None:
        raise RecipeError("Give a recipe file (slimkit run RECIPE.yaml) or --resume RUN_DIR.")
    _run_recipe(recipe, out, Trust(trust_checkpoint, trust_remote_code))


@app.command()
def demo(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run directory (new or empty).")
    ] = None,
) -> None:
    """Train a residual net on real MNIST digits, then prune, fine-tune and quantize it."""
    from importlib import resources

    with resources.as_file(resources.files("slimkit") / "recipes" / "demo.yaml") as path:
        _run_recipe(path, out)


class Backend(StrEnum):
    eager = "eager"
    compile = "compile"
    onnxruntime = "onnxruntime"


@app.command("eval")
def eval_cmd(
    model: ModelOpt,
    data: DataOpt,
    weights: WeightsOpt = None,
    backend: Annotated[
        Backend, typer.Option(help="Runtime to serve the model on.")
    ] = Backend.eager,
    batch_size: BatchOpt = 1,
    trust_checkpoint: TrustCheckpointOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Measure one model: accuracy, parameters, non-zeros, size, MACs, latency."""
    from slimkit.evaluation import evaluate

    with progress_for(console) as progress, progress.task("loading and measuring"):
        net, bundle, arch = _model_and_data(
            model, data, weights, Trust(trust_checkpoint, trust_remote_code)
        )
        figures = evaluate(net, bundle, backend=backend.value, batch_size=batch_size, arch=arch)
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


@app.command()
def bench(
    model: ModelOpt,
    data: DataOpt,
    weights: WeightsOpt = None,
    backend: Annotated[
        list[Backend] | None,
        typer.Option(help="Repeat to compare runtimes [default: eager and onnxruntime]."),
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

    backends = list(dict.fromkeys(backend or [Backend.eager, Backend.onnxruntime]))
    with progress_for(console) as progress, tempfile.TemporaryDirectory() as tmp:
        with progress.task("loading model and data"):
            net, bundle, arch = _model_and_data(
                model, data, weights, Trust(trust_checkpoint, trust_remote_code)
            )
        ms = [
            measure(
                b.value,
                "bench",
                ModelState(net, b.value),
                bundle,
                artifact_stem=Path(tmp) / b.value,
                arch=arch,
                batch_size=batch_size,
            )
            for b in backends
        ]
        time_interleaved(ms, bundle, batch_size=batch_size, rounds=rounds, progress=progress)
    table = Table(title=f"{model} on {data}, batch {batch_size}", title_justify="left")
    for col in ("backend", "acc %", "size", "p50 ms", "p90 ms", "ex/s", "vs first"):
        table.add_column(col, justify="left" if col == "backend" else "right")
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


class Format(StrEnum):
    onnx = "onnx"
    safetensors = "safetensors"
    npz = "npz"
    jsonl = "jsonl"


_SPLIT_FORMATS = (Format.npz, Format.jsonl)


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (must not exist).")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model source (for npz/jsonl: its tokenizer, if text)."),
    ] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="Data source.")] = None,
    run: Annotated[
        Path | None,
        typer.Option(help="For npz/jsonl: the test split of this run, as it scored it."),
    ] = None,
    weights: WeightsOpt = None,
    format: Annotated[
        Format,
        typer.Option(
            help="onnx (verified) or safetensors: the model; npz or jsonl: the test split's "
            "inputs and labels, for a client without slimkit."
        ),
    ] = Format.onnx,
    trust_checkpoint: TrustCheckpointOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Export a model (ONNX checked against PyTorch, or safetensors with its architecture), or
    the test split a run scored."""
    from slimkit.errors import ExportError

    if out.exists():
        raise ExportError(
            f"{out} already exists; slimkit never overwrites a file. Choose another --out."
        )
    if format in _SPLIT_FORMATS:
        rows = _export_split(
            out, format, model, data, run, Trust(trust_checkpoint, trust_remote_code)
        )
        console.print(f"Wrote {out}: the {rows:,} test rows ({out.stat().st_size:,} bytes).")
        return
    if model is None or data is None or run is not None:
        raise ExportError(f"--format {format.value} exports a model: give --model and --data.")
    from slimkit.export import export_onnx, save_model

    with progress_for(console) as progress, progress.task(f"exporting to {format.value}"):
        net, bundle, arch = _model_and_data(
            model, data, weights, Trust(trust_checkpoint, trust_remote_code)
        )
        if format is Format.onnx:
            export_onnx(
                net, bundle.sample_inputs(2), bundle.input_names, out, bundle.held_out_inputs()
            )
        else:
            save_model(net, out, arch)
    console.print(f"Wrote {out} ({out.stat().st_size:,} bytes).")


def _export_split(
    out: Path, format: Format, model: str | None, data: str | None, run: Path | None, trust: Trust
) -> int:
    """Write the test split of ``data`` (tokenised for ``model``), or of ``run`` as recorded."""
    from slimkit.data import load_data
    from slimkit.data.files import write_test_split
    from slimkit.errors import ExportError
    from slimkit.models import ModelSpec, load_tokenizer_for

    if run is not None:
        if data is not None or model is not None:
            raise ExportError("--run takes the model and data from the run; drop --model/--data.")
        bundle = _run_test_split(run)
    elif data is not None:
        spec = ModelSpec.parse(trust.apply({"source": model})) if model else None
        bundle = load_data(data, load_tokenizer_for(spec) if spec else None)
    else:
        raise ExportError(f"--format {format.value} writes a test split: give --data or --run.")
    return write_test_split(bundle, out, format.value)


def _run_test_split(run: Path) -> Any:
    """The test split of ``run`` (its recipe's data, tokenised for its model), checked to be
    the rows its split.npz records."""
    import numpy as np

    from slimkit.data import load_data
    from slimkit.errors import RunDirError
    from slimkit.models import load_tokenizer_for
    from slimkit.pipeline import with_opt_ins
    from slimkit.recipe import Recipe

    if not (run / "recipe.yaml").is_file() or not (run / "split.npz").is_file():
        raise RunDirError(f"{run} is not a run directory with a recorded split (split.npz).")
    recipe = with_opt_ins(Recipe.load(run / "recipe.yaml"), False, False)  # a file's, not yours
    bundle = load_data(recipe.data, load_tokenizer_for(recipe.model))
    try:
        with np.load(run / "split.npz", allow_pickle=False) as recorded:
            same = bundle.rows is not None and np.array_equal(recorded["test"], bundle.rows.test)
    except (OSError, ValueError, KeyError) as err:
        raise RunDirError(f"{run / 'split.npz'} is not a readable split record: {err}") from None
    if not same:
        raise RunDirError(
            f"The data of {run} no longer splits into the test rows its split.npz records (the "
            "source changed since the run); the rows it scored cannot be rebuilt."
        )
    return bundle


def _ratios(text: str) -> list[float]:
    try:
        return [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None


@app.command()
def sensitivity(
    model: ModelOpt,
    data: DataOpt,
    weights: WeightsOpt = None,
    ratios: Annotated[
        str, typer.Option(help="Sparsities to try per layer, comma-separated.")
    ] = ",".join(f"{r:g}" for r in DEFAULT_RATIOS),
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
            net, bundle, _ = _model_and_data(
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
                    "weights": c.weights,
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
        row = [c.layer, f"{c.weights:,}", *(f"{c.drop(r):+.2f}" for r in sorted(levels))]
        table.add_row(*row, *([f"{allocation[c.layer]:.0%}"] if allocation else []))
    console.print(table)
    console.print(f"Wrote {out}/sensitivity.md, sensitivity.json, sensitivity.png")


@app.command()
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
            {"name": "auto", "model": model, "data": data, "evaluation": {"batch_size": batch_size}}
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
    _print_results(result.results, result.run_dir)
    style = "green" if result.met_budget else "bold yellow"
    console.print(f"[{style}]{result.message}[/]")
    console.print(f"reproduce with: slimkit run {result.run_dir / 'best-recipe.yaml'}")


@app.command()
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


class Listing(StrEnum):
    all = "all"
    models = "models"
    data = "data"
    steps = "steps"
    pruning = "pruning"
    quantization = "quantization"
    runtimes = "runtimes"
    forms = "forms"


@app.command("list")
def list_cmd(what: Annotated[Listing, typer.Argument(help="What to list.")] = Listing.all) -> None:
    """Show built-in models, data sets, step types, pruning methods, quantization modes,
    runtimes and accepted source forms."""
    from slimkit.data import DATA_FORMS, DATASETS
    from slimkit.models import MODELS, SOURCE_FORMS
    from slimkit.pruning import PRUNE_METHODS
    from slimkit.quantization import QUANT_MODES
    from slimkit.runtimes import RUNTIMES
    from slimkit.steps import STEPS

    sections: dict[Listing, list[tuple[str, str]]] = {
        Listing.models: [(n, MODELS.help(n)) for n in MODELS],
        Listing.data: [(n, DATASETS.help(n)) for n in DATASETS],
        Listing.steps: [(n, STEPS.get(n).description) for n in STEPS],
        Listing.pruning: [(n, PRUNE_METHODS.help(n)) for n in PRUNE_METHODS],
        Listing.quantization: [(n, QUANT_MODES.help(n)) for n in QUANT_MODES],
        Listing.runtimes: [(n, RUNTIMES.get(n).description) for n in RUNTIMES],
        Listing.forms: [(f"--model {f.example}", f.name) for f in SOURCE_FORMS]
        + [(f"--data {f.example}", f.name) for f in DATA_FORMS],
    }
    for section, rows in sections.items():
        if what in (Listing.all, section):
            table = Table(title=section.value, title_justify="left")
            table.add_column("name")
            table.add_column("description")
            for name, text in rows:
                table.add_row(name, text)
            console.print(table)


def main() -> None:
    """Console entry point: library errors become one paragraph and exit status 2."""
    quiet_libraries()
    from slimkit.errors import RunInterrupted, SlimkitError

    try:
        app()
    except RunInterrupted as err:
        errors.print(f"[bold yellow]{err}[/]", highlight=False, soft_wrap=True)
        sys.exit(130)
    except SlimkitError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        errors.print("[bold yellow]Interrupted.[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
