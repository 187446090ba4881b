"""How to train, as data: :class:`TrainConfig` and its choices.

A leaf module: the configs of every technique that trains (pruning, quantization, distillation,
the baseline) compose a ``TrainConfig`` without importing the trainer.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator

from slimkit.config import Config
from slimkit.regularization.penalties import RegularizeConfig
from slimkit.training.augment import AUGMENTS


class Optimizer(StrEnum):
    ADAMW = "adamw"
    SGD = "sgd"


class Schedule(StrEnum):
    ONECYCLE = "onecycle"  # warm-up then cosine anneal to ~0; fastest convergence on small nets
    COSINE = "cosine"
    CONSTANT = "constant"


class Precision(StrEnum):
    FP32 = "fp32"
    BF16 = "bf16"  # autocast; native on CPUs with AVX-512 bf16 / AMX and on recent GPUs
    FP16 = "fp16"  # GPUs only (needs a gradient scaler)

    @property
    def accelerate_name(self) -> str:
        return "no" if self is Precision.FP32 else self.value


class Unfreeze(StrEnum):
    ALL = "all"  # everything not frozen trains from the first epoch
    GRADUAL = "gradual"  # the top block first, one more block per epoch (ULMFiT)


class TrainConfig(Config):
    """How to train: epochs, batch, optimizer and schedule, precision, what trains and how fast."""

    epochs: int = Field(1, ge=1, le=10_000, description="Passes over the training split.")
    batch_size: int = Field(64, ge=1, le=65_536, description="Global batch, over all processes.")
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="Peak learning rate.")
    optimizer: Optimizer = Field(Optimizer.ADAMW, description="AdamW, or SGD with momentum.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="Decoupled, for both optimizers.")
    schedule: Schedule = Field(Schedule.ONECYCLE, description="How the learning rate moves.")
    warmup_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of the steps spent warming up."
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Cross-entropy smoothing.")
    augment: tuple[str, ...] = Field(
        (), description="Augmentations by name (random-shift, random-flip, random-rot90)."
    )
    grad_clip: float | None = Field(None, gt=0.0, description="Clip the gradient norm to this.")
    grad_accumulation: int = Field(
        1, ge=1, le=4096, description="Batches summed per optimizer step."
    )
    precision: Precision = Field(Precision.FP32, description="Autocast precision (bf16 on CPU).")
    patience: int | None = Field(
        None, ge=1, description="Stop after this many epochs without a new best."
    )
    keep_best: bool = Field(
        True, description="Keep the best validation epoch; false keeps the last one."
    )
    regularize: RegularizeConfig = Field(
        RegularizeConfig(), description="Penalties added to the loss (L1, L2, group lasso, BN)."
    )
    freeze: tuple[str, ...] = Field((), description="Layers whose parameters never train.")
    unfreeze: Unfreeze = Field(
        Unfreeze.ALL, description="gradual thaws one block per epoch from the top."
    )
    layer_lr_decay: float | None = Field(
        None, gt=0.0, le=1.0, description="LR ratio per block down."
    )
    seed: int = Field(0, description="Seeds shuffling, augmentation and initialisation.")

    @field_validator("augment")
    @classmethod
    def _known_augments(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if name not in AUGMENTS:
                raise ValueError(AUGMENTS.unknown_message(name))
        return names
