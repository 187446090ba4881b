"""The ``finetune`` step: full fine-tuning, or feature extraction with a frozen backbone."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from slimkit.config import Config, gather_keys
from slimkit.state import ModelState
from slimkit.steps import StepContext, register_step
from slimkit.training.config import TrainConfig
from slimkit.training.features import train_head
from slimkit.training.trainer import TrainHistory, train


class FinetuneConfig(Config):
    """Training settings (``train``; its keys may also be written at the top level of the
    step), whether existing zeros (from pruning) stay zero, and whether only the head trains on
    cached backbone features (``feature_extraction``)."""

    train: TrainConfig = Field(TrainConfig(), description="How the model trains.")
    keep_sparsity: bool = Field(True, description="Weights pruned to zero stay zero.")
    feature_extraction: bool = Field(False, description="Train only the head, on cached features.")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return gather_keys(data, {"train": TrainConfig})


def _parse(data: dict[str, Any], where: str) -> FinetuneConfig:
    return FinetuneConfig.from_dict(data, where)


def describe(history: TrainHistory, what: str, config: TrainConfig) -> str:
    """One note line on a training phase: epochs, the validation accuracy of the epoch kept
    (the best one, or the last with ``keep_best: false``), induced sparsity."""
    ran, epochs = len(history.loss), config.epochs
    count = f"{ran} epochs" if ran == epochs else f"{ran} of {epochs} epochs (stopped early)"
    if config.keep_best:
        kept = f"best validation accuracy {max(history.val_accuracy):.2f}% at epoch "
        kept += str(history.best_epoch)
    else:
        kept = f"kept the last epoch, validation accuracy {history.val_accuracy[-1]:.2f}%"
    note = f"{what} {count}; {kept}"
    if history.sparsity:
        shares = ", ".join(f"{k.replace('_', ' ')} {v:.1f}%" for k, v in history.sparsity.items())
        note += f"; near-zero after regularization: {shares}"
    if history.resumed_after:
        note += f"; resumed from the epoch-{history.resumed_after} checkpoint of an interrupted run"
    return note


@register_step("finetune", _parse, config=FinetuneConfig)
def finetune_step(state: ModelState, config: FinetuneConfig, ctx: StepContext) -> ModelState:
    """Train the current model further (sparsity kept); keep the best validation epoch, or the
    last one with ``keep_best: false``."""
    if config.feature_extraction:
        history = train_head(state.module, ctx.data, config.train, ctx.progress)
        what = "trained the head on frozen features for"
    else:
        history = train(
            state.module,
            ctx.data,
            config.train,
            progress=ctx.progress,
            keep_sparsity=config.keep_sparsity,
            checkpoint_dir=ctx.checkpoint_dir,
        )
        what = "fine-tuned"
    return ModelState(state.module, state.runtime, notes=[describe(history, what, config.train)])
