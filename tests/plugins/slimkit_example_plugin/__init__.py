"""A package that extends slimkit through the ``slimkit.plugins`` entry point, as a user's own
would: one pruning method, quantization mode, model source form, data set, runtime and search
space, each registered with slimkit's public decorators and nothing else of slimkit edited.

The tests put this folder (with its ``.dist-info``) on ``PYTHONPATH`` in a fresh process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

import slimkit
from slimkit.data.sources import DataSpec, Examples
from slimkit.plugins import PruneInputs, SourceForm, Space, StepSpec, step
from slimkit.pruning import PruneConfig
from slimkit.quantization import QuantBackend, QuantizeConfig, QuantizedModel
from slimkit.runtimes import Prepared, ServeContext
from slimkit.state import ModelState

FEATURES = 8


# --- a data set ----------------------------------------------------------------------------
@slimkit.register_dataset("example-blobs")
def blobs(spec: DataSpec, tokenizer: Any) -> Examples:
    """Four Gaussian blobs in 8 dimensions, 400 points, seeded."""
    rng = np.random.default_rng(spec.seed)
    y = rng.integers(0, 4, 400)
    centres = rng.normal(0, 3, (4, FEATURES)).astype(np.float32)
    x = centres[y] + rng.normal(0, 1, (400, FEATURES)).astype(np.float32)
    return Examples((torch.from_numpy(x),), y.astype(np.int64), ("features",))


# --- a model source form -------------------------------------------------------------------
def _zoo(spec: slimkit.ModelSpec, hints: dict[str, Any]) -> nn.Module:
    """``example-zoo:mlp``: a two-layer perceptron over the data's features."""
    name = spec.source.removeprefix("example-zoo:")
    if name != "mlp":
        raise slimkit.ModelLoadError(f"example-zoo has only 'mlp', not {name!r}.")
    hidden = int(spec.kwargs.get("hidden", 32))
    classes = int(hints.get("num_classes", 2))
    return nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, classes))


slimkit.register_source_form(
    SourceForm("example zoo", "example-zoo:mlp", lambda s: s.startswith("example-zoo:"), _zoo)
)


# --- a pruning method ----------------------------------------------------------------------
@slimkit.register_pruning_method("example-random")
class RandomConfig(PruneConfig):
    """Zero a seeded random share of every Linear weight (a baseline any criterion must beat)."""

    method: Literal["example-random"] = "example-random"
    sparsity: float = Field(0.5, ge=0.0, lt=1.0)
    seed: int = 0


@slimkit.register_pruner(RandomConfig)
def _random(model: nn.Module, config: RandomConfig, inputs: PruneInputs) -> nn.Module:
    generator = torch.Generator().manual_seed(config.seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                keep = torch.rand(module.weight.shape, generator=generator) >= config.sparsity
                module.weight.mul_(keep)
    return model


# --- a runtime -----------------------------------------------------------------------------
@slimkit.register_runtime("example-bf16")
def _serve_bf16(state: ModelState, stem: Path, ctx: ServeContext) -> Prepared:
    """PyTorch under inference mode, feeding the model bf16 inputs."""
    artifact = slimkit.save_model(state.module, stem.with_suffix(".safetensors"), ctx.arch)
    module = state.module.eval()
    dtype = next(module.parameters()).dtype

    def engine(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        with torch.inference_mode():
            return module(*(x.to(dtype) for x in inputs)).float()

    return Prepared(engine, artifact)


# --- a quantization mode -------------------------------------------------------------------
@slimkit.register_quantization_mode("example-bf16-weights")
class Bf16WeightsConfig(QuantizeConfig):
    """Every weight and activation in bf16, served on the example-bf16 runtime."""

    mode: Literal["example-bf16-weights"] = "example-bf16-weights"
    backend: QuantBackend = QuantBackend.TORCH
    precision: ClassVar[str] = "bf16"


@slimkit.register_quantizer("example-bf16-weights", QuantBackend.TORCH)
def _to_bf16(model: nn.Module, config: Bf16WeightsConfig, **_: Any) -> QuantizedModel:
    layers = sum(isinstance(m, nn.Linear) for m in model.modules())
    return QuantizedModel(model.to(torch.bfloat16), "example-bf16", layers)


# --- a search space ------------------------------------------------------------------------
def _draw(trial: Any, inputs: Any) -> list[StepSpec]:
    sparsity = trial.suggest_categorical("sparsity", [0.25, 0.5])
    return [step("prune", {"method": "example-random", "sparsity": sparsity})]


slimkit.register_space(
    "example-random",
    Space(_draw, lambda inputs: {"sparsity": 0.5}, quantize={}),
    "random pruning at one of two sparsities",
)
