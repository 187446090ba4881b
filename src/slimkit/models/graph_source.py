"""``path/to/model.onnx`` as a model source: an ONNX graph, and the tokenizer of a text graph.

The graph is evaluated, benchmarked and quantized on ONNX Runtime, its figures counted from the
graph (:class:`~slimkit.models.graph.OnnxGraph`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from slimkit import _yaml
from slimkit.errors import ModelLoadError, RecipeError, quote
from slimkit.models.graph import OnnxGraph
from slimkit.models.persist import is_import_path
from slimkit.models.sources import (
    ModelSpec,
    SourceForm,
    existing_path,
    register_source_form,
    tokenizer_dir,
)


def build_graph(spec: ModelSpec, hints: dict[str, Any]) -> nn.Module:
    """The graph ``spec.source`` names; its only kwarg is a text graph's ``tokenizer``."""
    unknown = sorted(set(spec.kwargs) - {"tokenizer"})
    if unknown or spec.weights is not None:
        raise ModelLoadError(
            f"An ONNX graph takes only the kwarg tokenizer (a folder, for text), not "
            f"{quote(unknown or ['weights'])}: its architecture and weights are in the file."
        )
    return OnnxGraph(existing_path(spec.source))


def graph_tokenizer(spec: ModelSpec) -> Path | None:
    """A text graph's tokenizer: the ``tokenizer`` kwarg; else the graph's own folder when it
    holds one (optimum's export layout); else, for an artifact of a slimkit run, the tokenizer
    of the model its recipe names (the recipe read as data: no factory is imported)."""
    if "tokenizer" in spec.kwargs:
        return existing_path(str(spec.kwargs["tokenizer"]))
    folder = existing_path(spec.source).resolve().parent
    if (folder / "tokenizer_config.json").is_file():
        return folder
    recipe = folder.parent / "recipe.yaml"
    if folder.name != "artifacts" or not recipe.is_file() or recipe.is_symlink():
        return None
    try:
        named = ModelSpec.parse(_yaml.load_yaml(recipe).get("model"), f"{recipe}: model")
    except (_yaml.YamlError, AttributeError, ModelLoadError, RecipeError):
        return None  # not a recipe slimkit wrote: no tokenizer to take from it
    return None if is_import_path(named.source) else tokenizer_dir(named)


register_source_form(
    SourceForm(
        "ONNX graph",
        "path/to/model.onnx",
        lambda s: s.endswith(".onnx"),
        build_graph,
        graph_tokenizer,
        trained=lambda spec: True,
    )
)
