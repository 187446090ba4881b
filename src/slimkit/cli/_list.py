"""``slimkit list``: what the registries hold and the source forms accepted."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from slimkit.cli._common import (
    console,
)


class Listing(StrEnum):
    all = "all"
    models = "models"
    data = "data"
    steps = "steps"
    pruning = "pruning"
    quantization = "quantization"
    runtimes = "runtimes"
    spaces = "spaces"
    families = "families"
    forms = "forms"
    plugins = "plugins"


def list_cmd(
    what: Annotated[Listing, typer.Argument(help="What to list.")] = Listing.all,
    keys: Annotated[
        bool, typer.Option("--keys", help="With steps: every key of every step, as Markdown.")
    ] = False,
) -> None:
    """Show what is registered: models, data, steps, pruning, quantization, runtimes, search
    spaces, transformer families, source forms, and the plugins that added to them."""
    from slimkit.data import DATA_FORMS, DATASETS
    from slimkit.models import MODELS, SOURCE_FORMS
    from slimkit.models.families import FAMILIES
    from slimkit.models.sources import REGISTERED_NAME
    from slimkit.plugins import load_plugins
    from slimkit.pruning import PRUNE_METHODS
    from slimkit.quantization import QUANT_MODES
    from slimkit.runtimes import RUNTIMES
    from slimkit.search.space import SPACES
    from slimkit.steps import STEPS

    if keys:
        from slimkit.reference import markdown

        console.print(markdown(), markup=False, highlight=False, soft_wrap=True)
        return
    sections: dict[Listing, list[tuple[str, str]]] = {
        Listing.models: [(n, MODELS.help(n)) for n in MODELS],
        Listing.data: [(n, DATASETS.help(n)) for n in DATASETS],
        Listing.steps: [(n, STEPS.get(n).description) for n in STEPS],
        Listing.pruning: [(n, PRUNE_METHODS.help(n)) for n in PRUNE_METHODS],
        Listing.quantization: [(n, QUANT_MODES.help(n)) for n in QUANT_MODES],
        Listing.runtimes: [(n, RUNTIMES.get(n).description) for n in RUNTIMES],
        Listing.spaces: [(n, SPACES.help(n)) for n in SPACES],
        Listing.families: [(n, FAMILIES.help(n)) for n in FAMILIES],
        Listing.forms: [
            (f"--model {f.example}", f.name) for f in [*SOURCE_FORMS.values(), REGISTERED_NAME]
        ]
        + [(f"--data {f.example}", f.name) for f in DATA_FORMS]
        + [
            (
                "--data '{source: bbc-news, max_length: 64}'",
                "any data source with the options a recipe's data: mapping takes",
            ),
            (
                "--model '{source: model.onnx, kwargs: {tokenizer: DIR}}'",
                "any model source with the options a recipe's model: mapping takes",
            ),
        ],
        Listing.plugins: [
            (p.name, f"{p.value} ({p.distribution})" + (f": FAILED, {p.error}" if p.error else ""))
            for p in load_plugins()
        ],
    }
    for section, rows in sections.items():
        if what in (Listing.all, section):
            table = Table(title=section.value, title_justify="left")
            table.add_column("name")
            table.add_column("description")
            for name, text in rows:
                table.add_row(name, text)
            console.print(table)
