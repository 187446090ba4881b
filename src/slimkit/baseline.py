"""A recipe's baseline: its data and model loaded, checked to fit, and trained or reused.

Runs, searches and benchmarks all start from :func:`prepare_baseline`, so every tool measures
the same baseline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimkit.data import DataBundle, load_data
from slimkit.errors import RecipeError, ShapeMismatchError
from slimkit.models import arch_of, build_model, load_tokenizer_for
from slimkit.models.arch import Arch
from slimkit.models.graph import OnnxGraph
from slimkit.models.sources import comes_trained
from slimkit.progress import SILENT, Progress
from slimkit.recipe import Recipe
from slimkit.resume import StepStore, chain_key
from slimkit.state import ModelState, runtime_for
from slimkit.training import cache, train
from slimkit.training.step import describe


@dataclass(frozen=True)
class Baseline:
    """A recipe's baseline: the model (trained or loaded), its data, and how to rebuild it."""

    model: nn.Module
    data: DataBundle
    arch: Arch
    notes: list[str]
    key: str  # what produced it: the root of the steps' content keys


def prepare_baseline(
    recipe: Recipe, progress: Progress = SILENT, store: StepStore | None = None
) -> Baseline:
    """Load the recipe's data and model, check they fit, and train or reuse the baseline.

    Benchmarks and searches start from here too, so every tool measures the same baseline.
    With a ``store``, a baseline trained by this run is kept there (and reused on resume).
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
    head = recipe.to_dict()
    key = chain_key("", {k: v for k, v in head.items() if k not in ("name", "steps")})
    name = "00-baseline"
    kept = store.load(name, key) if store is not None and recipe.baseline.train else None
    if kept is None:
        start = time.perf_counter()
        where = store.training_dir(name, key) if store is not None else None
        notes = _baseline(model, arch, recipe, data, progress, where)
        if store is None or not recipe.baseline.train:
            return Baseline(model.eval(), data, arch, notes, key)
        state = ModelState(model, runtime_for(model, recipe.evaluation.runtime), notes=notes)
        kept = store.save(name, key, state, arch, time.perf_counter() - start)
        assert kept is not None  # only an exported program goes unkept; a baseline is a module
    model_key = chain_key(key, {"model": kept.digest})
    return Baseline(kept.state.module.eval(), data, arch, kept.state.notes, model_key)


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
    model: nn.Module,
    arch: Arch,
    recipe: Recipe,
    data: DataBundle,
    progress: Progress,
    checkpoint_dir: Path | None,
) -> list[str]:
    config = recipe.baseline.train
    if config is not None and isinstance(model, OnnxGraph):
        raise RecipeError(
            f"baseline.train trains PyTorch weights, and {model.path} is an ONNX graph: remove "
            "baseline.train to measure the graph as it is, or train the PyTorch model."
        )
    if config is None:
        if not comes_trained(recipe.model):
            return [
                "baseline is untrained (no trained weights or head, no baseline.train): "
                "chance-level accuracy"
            ]
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
        history = train(model, data, config, progress=progress, checkpoint_dir=checkpoint_dir)
    if recipe.baseline.cache:
        cache.store(model, key, arch, history.to_dict())
    return [describe(history, "baseline trained", config)]
