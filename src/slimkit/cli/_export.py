"""``slimkit export``: a model (ONNX, safetensors, a Hugging Face directory) or the test split
a run scored."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from slimkit._console import progress_for
from slimkit.cli._common import (
    Trust,
    TrustCheckpointOpt,
    TrustRemoteCodeOpt,
    WeightsOpt,
    console,
    model_and_data,
    model_spec,
    source,
)


class Format(StrEnum):
    onnx = "onnx"
    safetensors = "safetensors"
    hf = "hf"
    npz = "npz"
    jsonl = "jsonl"


_SPLIT_FORMATS = (Format.npz, Format.jsonl)


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
            help="onnx (verified), safetensors, or hf (a Hugging Face directory transformers "
            "loads, verified): the model; npz or jsonl: the test split's inputs and labels, "
            "for a client without slimkit."
        ),
    ] = Format.onnx,
    trust_checkpoint: TrustCheckpointOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Export a model (ONNX or a Hugging Face directory, each checked against PyTorch;
    safetensors) or a run's test split."""
    from slimkit.errors import ExportError

    if out.exists():
        raise ExportError(
            f"{out} already exists; slimkit never overwrites a file. Choose another --out."
        )
    trust = Trust(trust_checkpoint, trust_remote_code)
    if format in _SPLIT_FORMATS:
        rows = _export_split(out, format, model, data, run, trust)
        console.print(f"Wrote {out}: the {rows:,} test rows ({out.stat().st_size:,} bytes).")
        return
    if model is None or data is None or run is not None:
        raise ExportError(f"--format {format.value} exports a model: give --model and --data.")
    from slimkit.export import export_hf, export_onnx, save_model
    from slimkit.models import load_tokenizer_for

    with progress_for(console) as progress, progress.task(f"exporting to {format.value}"):
        net, bundle, arch = model_and_data(model, data, weights, trust)
        if format is Format.onnx:
            export_onnx(
                net, bundle.sample_inputs(2), bundle.input_names, out, bundle.held_out_inputs()
            )
        elif format is Format.hf:
            tokenizer = load_tokenizer_for(model_spec(model, trust))
            export_hf(net, out, bundle.held_out_inputs(), tokenizer)
            console.print(f"Wrote {out}/ (AutoModel*.from_pretrained and AutoTokenizer load it).")
            return
        else:
            save_model(net, out, arch)
    console.print(f"Wrote {out} ({out.stat().st_size:,} bytes).")


def _export_split(
    out: Path, format: Format, model: str | None, data: str | None, run: Path | None, trust: Trust
) -> int:
    """Write the test split of ``data`` (tokenised for ``model``), or of ``run`` as recorded."""
    from slimkit.data import DataSpec, load_data
    from slimkit.data.files import write_test_split
    from slimkit.errors import ExportError
    from slimkit.models import load_tokenizer_for

    if run is not None:
        if data is not None or model is not None:
            raise ExportError("--run takes the model and data from the run; drop --model/--data.")
        bundle = _run_test_split(run, trust)
    elif data is not None:
        spec = model_spec(model, trust) if model else None
        bundle = load_data(
            DataSpec.parse(source(data, "--data"), "--data"),
            load_tokenizer_for(spec) if spec else None,
        )
    else:
        raise ExportError(f"--format {format.value} writes a test split: give --data or --run.")
    return write_test_split(bundle, out, format.value)


def _run_test_split(run: Path, trust: Trust) -> Any:
    """The test split of ``run`` (its recipe's data, tokenised for its model), checked to be
    the rows its split.npz records. The saved recipe's opt-ins are replaced by the user's."""
    import numpy as np

    from slimkit.data import load_data
    from slimkit.errors import RunDirError
    from slimkit.models import load_tokenizer_for
    from slimkit.recipe import Recipe, with_opt_ins

    if not (run / "recipe.yaml").is_file() or not (run / "split.npz").is_file():
        raise RunDirError(f"{run} is not a run directory with a recorded split (split.npz).")
    recipe = with_opt_ins(Recipe.load(run / "recipe.yaml"), trust.checkpoint, trust.remote_code)
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
