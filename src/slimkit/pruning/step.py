"""The ``prune`` pipeline step."""

from __future__ import annotations

from torch import nn

from slimkit.evaluation.metrics import accuracy, predict
from slimkit.pruning import ChannelConfig, MagnitudeConfig, PruneConfig, parse_prune_config, prune
from slimkit.pruning.configs import Scope
from slimkit.pruning.schedules import gradual_prune
from slimkit.pruning.sensitivity import allocate, layer_sensitivity, prunable_layers
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

    notes = []
    if isinstance(config, MagnitudeConfig) and config.scope is Scope.SENSITIVITY:
        config, note = _allocate_by_sensitivity(state.module, config, ctx)
        notes.append(note)
    if isinstance(config, MagnitudeConfig) and config.gradual is not None:
        history = gradual_prune(state.module, config, ctx.data, ctx.progress)
        note = (
            f"gradual {config.gradual.ramp} ramp to {config.sparsity:.0%} over "
            f"{config.gradual.finetune.epochs} epochs; final validation accuracy "
            f"{history.val_accuracy[-1]:.2f}%"
        )
        return ModelState(state.module, state.backend, notes=[*notes, note])
    batches = ctx.data.train.batches(64) if isinstance(config, ChannelConfig) else None
    module = prune(
        state.module, config, ctx.data.sample_inputs(1), batches=batches, between=between
    )
    return ModelState(module, state.backend, notes=notes)


def _allocate_by_sensitivity(
    model: nn.Module, config: MagnitudeConfig, ctx: StepContext
) -> tuple[MagnitudeConfig, str]:
    """Measure each layer's sensitivity on validation data; per-layer sparsities as overrides."""

    def evaluate(m: nn.Module) -> float:
        return accuracy(*predict(lambda x: m(*x), ctx.data.val.batches(256)))

    with ctx.progress.task("sensitivity analysis", total=len(prunable_layers(model))) as task:
        curves = layer_sensitivity(model, evaluate, on_layer=lambda _: task.advance())
    allocation = allocate(curves, config.sparsity)
    shown = ", ".join(f"{n} {r:.0%}" for n, r in allocation.items())
    resolved = config.model_copy(update={"scope": Scope.LAYER, "overrides": allocation})
    return resolved, f"sensitivity allocation for {config.sparsity:.0%} overall: {shown}"
