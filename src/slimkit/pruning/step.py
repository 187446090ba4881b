"""The ``prune`` pipeline step."""

from __future__ import annotations

from slimkit.pruning import PruneConfig, parse_prune_config, prune
from slimkit.state import ModelState
from slimkit.steps import StepContext, register_step


@register_step("prune", parse_prune_config)
def prune_step(state: ModelState, config: PruneConfig, ctx: StepContext) -> ModelState:
    """Prune weights (magnitude) or whole channels (channels); see slimkit list pruning."""
    module = prune(state.module, config, ctx.data.sample_inputs(1))
    return ModelState(module, state.backend)
