"""The ``prune`` pipeline step."""

from __future__ import annotations

from torch import nn

from slimkit.pruning import ChannelConfig, PruneConfig, parse_prune_config, prune
from slimkit.state import ModelState
from slimkit.steps import StepContext, register_step
from slimkit.training.trainer import train


@register_step("prune", parse_prune_config)
def prune_step(state: ModelState, config: PruneConfig, ctx: StepContext) -> ModelState:
    """Prune weights (magnitude) or whole channels (channels); see slimkit list pruning."""
    between = None
    if isinstance(config, ChannelConfig) and config.finetune is not None:
        schedule = config.finetune

        def between(model: nn.Module) -> None:
            train(model, ctx.data, schedule, progress=ctx.progress)

    batches = ctx.data.train.batches(64) if isinstance(config, ChannelConfig) else None
    module = prune(
        state.module, config, ctx.data.sample_inputs(1), batches=batches, between=between
    )
    return ModelState(module, state.backend)
