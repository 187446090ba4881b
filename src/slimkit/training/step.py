"""The ``finetune`` pipeline step."""

from __future__ import annotations

from typing import Any

from slimkit.state import ModelState
from slimkit.steps import StepContext, register_step
from slimkit.training.trainer import TrainConfig, train


class FinetuneConfig(TrainConfig):
    """Training settings plus whether existing zeros (from pruning) must stay zero."""

    keep_sparsity: bool = True


def _parse(data: dict[str, Any], where: str) -> FinetuneConfig:
    return FinetuneConfig.from_dict(data, where)


@register_step("finetune", _parse)
def finetune_step(state: ModelState, config: FinetuneConfig, ctx: StepContext) -> ModelState:
    """Train the current model further (sparsity kept), restoring the best validation epoch."""
    history = train(
        state.module, ctx.data, config, progress=ctx.progress, keep_sparsity=config.keep_sparsity
    )
    note = (
        f"fine-tuned {config.epochs} epochs; best validation accuracy "
        f"{max(history.val_accuracy):.2f}% at epoch {history.best_epoch}"
    )
    return ModelState(state.module, state.backend, notes=[note])
