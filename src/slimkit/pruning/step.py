"""The ``prune`` pipeline step: hand the method what its config declares it needs."""

from __future__ import annotations

from torch import nn

from slimkit.errors import few
from slimkit.pruning import Need, PruneConfig, PruneInputs, apply_pruner, parse_prune_config
from slimkit.pruning.configs import PRUNE_METHODS
from slimkit.state import ModelState
from slimkit.steps import StepContext, Variants, register_step


@register_step(
    "prune",
    parse_prune_config,
    config=Variants("method", lambda: {n: PRUNE_METHODS.get(n) for n in PRUNE_METHODS}),
)
def prune_step(state: ModelState, config: PruneConfig, ctx: StepContext) -> ModelState:
    """Prune weights, whole channels, heads or neurons: methods in `slimkit list pruning`."""
    tokenizer = _tokenizer(ctx) if Need.TOKENIZER in config.needs() else None
    inputs = PruneInputs(tokenizer=tokenizer, progress=ctx.progress).filled_from(ctx.data, config)
    module, notes = apply_pruner(state.module, config, inputs)
    return ModelState(module, state.runtime, notes=[*notes, *sparsity_notes(module, config)])


def sparsity_notes(model: nn.Module, config: PruneConfig) -> list[str]:
    """A warning when a weight-zeroing method left the model as a whole far less sparse than
    its nominal sparsity (its targets missed most weights)."""
    nominal = config.nominal_sparsity
    if nominal is None:
        return []
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    total = sum(m.weight.numel() for _, m in layers)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    if total and zeros / total < nominal / 2:
        dense = [n for n, m in layers if not bool((m.weight == 0).any())]
        return [
            f"only {zeros / total:.1%} of all Conv2d/Linear weights are zero, far below the "
            f"nominal {nominal:.0%}: still dense are {few(dense)}; widen targets: or ignore "
            "fewer layers"
        ]
    return []


def _tokenizer(ctx: StepContext) -> object:
    """The model's tokenizer, found through its architecture record (None if it has none)."""
    from slimkit.models import ModelSpec, load_tokenizer_for

    return load_tokenizer_for(ModelSpec(source=ctx.arch.source)) if ctx.arch else None
