"""slimkit: make trained PyTorch models smaller and faster, and measure every trade-off.

The public API, on one page:

- ``run(recipe)``, ``Recipe``: run a baseline and its steps into a run directory.
- ``build_model(source)``, ``load_data(source)``: the model and data sources recipes name.
- ``prune(model, config)``, ``quantize(model, config, ...)``, ``train(model, data, config)``,
  ``distill(teacher, student, data, config, train)``, ``transfer_weights(model, tensors)``: the
  techniques as plain functions, one typed config each (``TrainConfig.regularize`` takes a
  ``RegularizeConfig``).
- ``evaluate(model, data)``: the figures every step is measured by.
- ``auto(recipe, AutoConfig(...))``: search all techniques for the best model within a budget.
- ``list_models()``, ``list_datasets()``, ``list_steps()``: what is registered.
- ``register_*``: add a model, source form, data set, pruning method, quantization mode,
  runtime, search space or step type, from your own code or a plugin (:mod:`slimkit.plugins`).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from torch import nn

from slimkit._quiet import quiet_third_party
from slimkit.data import DataBundle, DataSpec, load_data
from slimkit.distillation import step as _distill_step  # noqa: F401  (registers the step)
from slimkit.distillation.configs import DistillConfig
from slimkit.distillation.task import distill
from slimkit.errors import (
    DataLoadError,
    ExportError,
    ModelLoadError,
    RecipeError,
    RunDirError,
    ShapeMismatchError,
    SlimkitError,
    StepError,
    UnsafeCheckpointError,
)
from slimkit.evaluation import evaluate
from slimkit.models import MODELS, ModelSpec, register_model, save_model
from slimkit.models import build_model as _build_model
from slimkit.pipeline import RunResult, run
from slimkit.plugins import (
    load_plugins,
    register_dataset,
    register_pruner,
    register_pruning_method,
    register_quantization_mode,
    register_quantizer,
    register_runtime,
    register_source_form,
    register_space,
    register_step,
)
from slimkit.pruning import prune
from slimkit.pruning import step as _prune_step  # noqa: F401  (registers the step)
from slimkit.quantization import quantize
from slimkit.quantization import step as _quantize_step  # noqa: F401
from slimkit.recipe import Recipe
from slimkit.regularization import RegularizeConfig
from slimkit.search import AutoConfig, auto
from slimkit.training import TrainConfig, train
from slimkit.training import step as _train_step  # noqa: F401
from slimkit.transfer import step as _transfer_step  # noqa: F401
from slimkit.transfer.matching import transfer_weights

__version__ = metadata.version("slimkit")
quiet_third_party()  # the libraries log when first used (export, torchao), after this


def build_model(source: str | dict[str, Any] | ModelSpec, **hints: Any) -> nn.Module:
    """Build a model from a source string or spec (see ``slimkit list models``).

    >>> import slimkit
    >>> net = slimkit.build_model("resnet-mini", num_classes=10, in_channels=1)
    """
    return _build_model(ModelSpec.parse(source), **hints)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.list(pattern)


def list_datasets(pattern: str = "*") -> list[str]:
    from slimkit.data import DATASETS

    return DATASETS.list(pattern)


def list_steps(pattern: str = "*") -> list[str]:
    from slimkit.steps import STEPS

    return STEPS.list(pattern)


__all__ = [
    "AutoConfig",
    "DataBundle",
    "DataLoadError",
    "DataSpec",
    "DistillConfig",
    "ExportError",
    "ModelLoadError",
    "ModelSpec",
    "Recipe",
    "RecipeError",
    "RegularizeConfig",
    "RunDirError",
    "RunResult",
    "ShapeMismatchError",
    "SlimkitError",
    "StepError",
    "TrainConfig",
    "UnsafeCheckpointError",
    "__version__",
    "auto",
    "build_model",
    "distill",
    "evaluate",
    "list_datasets",
    "list_models",
    "list_steps",
    "load_data",
    "load_plugins",
    "prune",
    "quantize",
    "register_dataset",
    "register_model",
    "register_pruner",
    "register_pruning_method",
    "register_quantization_mode",
    "register_quantizer",
    "register_runtime",
    "register_source_form",
    "register_space",
    "register_step",
    "run",
    "save_model",
    "train",
    "transfer_weights",
]


load_plugins()  # last: a plugin imports slimkit, which must be complete by then
