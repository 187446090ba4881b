"""What a quantization mode takes from a data set: traced examples and their names, held-out
inputs to verify an export on, calibration batches (static int8) and the training loop (QAT).

The ``quantize`` step and :func:`slimkit.quantize` given a data set both build them here, so a
mode calibrates and trains the same way whichever one calls it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from slimkit.data.bundle import DataBundle
from slimkit.distillation.losses import kd_loss
from slimkit.progress import SILENT, Progress
from slimkit.quantization.configs import Need, QatConfig, QuantizeConfig, StaticInt8Config
from slimkit.training.trainer import train

CALIBRATION_BATCH = 32
EXAMPLE_BATCH = 8  # traced with a batch of this size; exports keep the batch axis dynamic


@dataclass(frozen=True)
class QuantInputs:
    """Everything :func:`slimkit.quantize` takes besides the model and the config."""

    example_inputs: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    check_inputs: tuple[torch.Tensor, ...]
    calibration: list[tuple[torch.Tensor, ...]] | None = None
    train_loop: Callable[[nn.Module], None] | None = None


def inputs_from(
    data: DataBundle,
    config: QuantizeConfig,
    model: nn.Module,
    seed: int = 0,
    progress: Progress = SILENT,
) -> QuantInputs:
    """The inputs ``config`` needs, from ``data``: calibration from a seeded random sample of
    the training split; QAT distils from a copy of ``model``'s float weights."""
    calibration = train_loop = None
    if Need.CALIBRATION in config.needs():
        assert isinstance(config, StaticInt8Config)  # the one mode that calibrates
        subset = data.calibration(config.calibration_samples, seed=seed)
        calibration = [inputs for inputs, _ in subset.batches(CALIBRATION_BATCH)]
    if Need.TRAIN_LOOP in config.needs():
        assert isinstance(config, QatConfig)  # the one mode that trains
        train_loop = qat_train_loop(config, data, copy.deepcopy(model), progress)
    return QuantInputs(
        data.sample_inputs(EXAMPLE_BATCH),
        data.input_names,
        data.held_out_inputs(),
        calibration,
        train_loop,
    )


def qat_train_loop(
    config: QatConfig, data: DataBundle, teacher: nn.Module, progress: Progress = SILENT
) -> Callable[[nn.Module], None]:
    """The training QAT runs: ``config.train`` on ``data``, distilling from ``teacher`` if asked."""
    loss_fn = None
    if config.distill is not None:
        distill = config.distill
        teacher.eval()

        def loss_fn(
            logits: torch.Tensor, labels: torch.Tensor, inputs: tuple[torch.Tensor, ...]
        ) -> torch.Tensor:
            with torch.no_grad():
                target = teacher(*inputs)
            return kd_loss(logits, target, labels, distill.temperature, distill.alpha)

    def loop(model: nn.Module) -> None:
        train(model, data, config.train, progress=progress, loss_fn=loss_fn)

    return loop
