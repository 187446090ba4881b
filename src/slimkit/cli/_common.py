"""What every command shares: the typer app, the consoles, the options, the user's opt-ins,
loading a model with its data, and printing a run's results."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from slimkit.models.arch import Arch

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
    str,
    typer.Option(
        "--model", "-m", help="Model source (`slimkit list forms`), or a mapping: '{source: ...}'."
    ),
]
DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help="Data source (`slimkit list forms`), or a mapping as in recipes: "
        "'{source: csv:t.csv, max_length: 64}'.",
    ),
]


def source(text: str, option: str) -> str | dict[str, Any]:
    """A ``--model``/``--data`` value: a source string, or a ``{...}`` mapping written as in a
    recipe (read as bounded YAML, never evaluated)."""
    from slimkit._yaml import YamlError, load_yaml_text
    from slimkit.errors import RecipeError

    if not text.lstrip().startswith("{"):
        return text
    try:
        value = load_yaml_text(text)
    except YamlError as err:
        raise RecipeError(f"{option} {err}.") from None
    if not isinstance(value, dict):
        raise RecipeError(f"{option} must be a source string or a {{key: value}} mapping.")
    return value


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


def model_spec(model: str, trust: Trust, weights: Path | None = None) -> Any:
    """The :class:`~slimkit.models.ModelSpec` a ``--model`` value (and ``--weights``) names,
    with the user's opt-ins."""
    from slimkit.models import ModelSpec

    given = source(model, "--model")
    mapping = given if isinstance(given, dict) else {"source": given}
    if weights:
        mapping = {**mapping, "weights": str(weights)}
    return ModelSpec.parse(trust.apply(mapping), "--model")


def model_and_data(
    model: str, data: str, weights: Path | None, trust: Trust
) -> tuple[Any, Any, Arch]:
    from slimkit.baseline import check_fits
    from slimkit.data import DataSpec, load_data
    from slimkit.models import arch_of, build_model, load_tokenizer_for

    spec = model_spec(model, trust, weights)
    bundle = load_data(DataSpec.parse(source(data, "--data"), "--data"), load_tokenizer_for(spec))
    hints = {
        k: v
        for k, v in (("num_classes", bundle.num_classes), ("in_channels", bundle.in_channels))
        if v is not None
    }
    net = build_model(spec, **hints)
    check_fits(net, bundle, spec.source)
    return net, bundle, arch_of(spec, hints)


def print_results(results: dict[str, Any], run_dir: Path) -> None:
    from slimkit.report.markdown import COMPACT, HEADERS, fastest_line, step_rows
    from slimkit.results import points

    table = Table(title=f"slimkit run {results['recipe']['name']}", title_justify="left")
    keep = [HEADERS.index(h) for h in COMPACT]
    for h in COMPACT:
        table.add_column(h, justify="left" if h in ("step", "runtime") else "right", no_wrap=True)
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
    for line in fastest_line(results)[1:]:
        console.print(f"[bold]{line}[/]")
    for warning in results.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {warning}")
    for step in results["steps"]:
        for note in step["notes"]:
            console.print(f"  [dim]{step['name']}:[/] {note}")
    console.print(f"Run directory: [bold]{run_dir}[/] (results.json, report.md, artifacts/)")
