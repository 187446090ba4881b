"""The ``finetune`` step: full fine-tuning, or feature extraction with a frozen backbone."""

from __future__ import annotations

from typing import Any

from slimkit.state import ModelState
from slimkit.steps import StepContext, register_step
from slimkit.training.trainer import TrainConfig, TrainHistory, train


class FinetuneConfig(TrainConfig):
    """Training settings, whether existing zeros (from pruning) stay zero, and whether only the
    head trains on cached backbone features (``feature_extraction``)."""

    keep_sparsity: bool = True
    feature_extraction: bool = False


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
        from slimkit.transfer.features import train_head

        history = train_head(state.module, ctx.data, config, ctx.progress)
        what = "trained the head on frozen features for"
    else:
        history = train(
            state.module,
            ctx.data,
            config,
            progress=ctx.progress,
            keep_sparsity=config.keep_sparsity,
            checkpoint_dir=ctx.checkpoint_dir,
        )
        what = "fine-tuned"
    return ModelState(state.module, state.runtime, notes=[describe(history, what, config)])
