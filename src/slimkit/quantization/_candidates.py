"""Building, serving and scoring alternative quantized models: shared by auto and recovery."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from slimkit.data.bundle import DataBundle
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.quantization import QuantizeConfig, quantize
from slimkit.quantization.result import QuantizedModel
from slimkit.runtimes import Engine, prepare
from slimkit.state import ModelState


@contextmanager
def workspace(out_path: Path) -> Iterator[Path]:
    """A scratch folder beside ``out_path`` for candidates' artifacts, removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=".candidates-", dir=out_path.parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build(
    model: nn.Module,
    config: QuantizeConfig,
    data: DataBundle,
    out_path: Path,
    calibration: list[tuple[torch.Tensor, ...]] | None = None,
    train_loop: Callable[[nn.Module], None] | None = None,
) -> QuantizedModel:
    """Quantize a copy of ``model`` (the float original stays untouched) on ``data``'s inputs."""
    return quantize(
        copy.deepcopy(model),
        config,
        example_inputs=data.sample_inputs(8),
        input_names=data.input_names,
        check_inputs=data.held_out_inputs(),
        out_path=out_path,
        calibration=calibration,
        train_loop=train_loop,
    )


def variant(config: QuantizeConfig, **changes: object) -> QuantizeConfig:
    """``config`` with some fields changed, validated again (raises RecipeError if invalid)."""
    return type(config).from_dict({**config.to_dict(), **changes})


def serve(
    result: QuantizedModel, data: DataBundle, work: Path, name: str, batch_size: int
) -> Engine:
    state = ModelState(result.module, result.runtime, artifact=result.artifact)
    return prepare(
        state,
        work / f"{name}-served",
        input_names=data.input_names,
        sample_inputs=data.sample_inputs(batch_size),
        threads=torch.get_num_threads(),
        arch=None,
    ).engine


def val_accuracy(engine: Engine, data: DataBundle) -> float:
    return accuracy(*predict(engine, data.val.batches(256)))


def adopt(result: QuantizedModel, out_path: Path) -> QuantizedModel:
    """Move the chosen candidate's artifact out of the workspace to the step's artifact path."""
    if result.artifact is not None:
        final = out_path.with_suffix(result.artifact.suffix)
        if result.artifact.suffix == ".xml":  # an OpenVINO IR keeps its weights beside it
            os.replace(result.artifact.with_suffix(".bin"), final.with_suffix(".bin"))
        os.replace(result.artifact, final)
        result.artifact = final
    return result
