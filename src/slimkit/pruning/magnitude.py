"""The magnitude and random methods: one shot, spread by measured sensitivity, or gradually
while fine-tuning; one handler picks the way from the config."""

from __future__ import annotations

from torch import nn

from slimkit.pruning.configs import MagnitudeConfig, RandomConfig, Scope
from slimkit.pruning.handlers import PruneInputs, register_pruner
from slimkit.pruning.schedules import gradual_prune
from slimkit.pruning.sensitivity import allocate_for
from slimkit.pruning.unstructured import magnitude_prune


@register_pruner(MagnitudeConfig, RandomConfig)
def _magnitude(model: nn.Module, config: MagnitudeConfig, given: PruneInputs) -> nn.Module:
    if config.scope is Scope.SENSITIVITY:
        assert given.data is not None  # declared in MagnitudeConfig.needs, checked by prune
        config, note = allocate_for(model, config, given.data, given.progress)
        given.notes.append(note)
    if config.gradual is None:
        return magnitude_prune(model, config)
    assert given.data is not None
    history = gradual_prune(model, config, given.data, given.progress)
    given.notes.append(
        f"gradual {config.gradual.ramp} ramp to {config.sparsity:.0%} over "
        f"{config.gradual.finetune.epochs} epochs; final validation accuracy "
        f"{history.val_accuracy[-1]:.2f}%"
    )
    return model
