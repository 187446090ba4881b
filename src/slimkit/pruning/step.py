"""The ``prune`` pipeline step."""

from __future__ import annotations

import torch
from torch import nn

from slimkit.errors import StepError, few
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.models.embedding import RemappedEmbedding
from slimkit.pruning import (
    ChannelConfig,
    MagnitudeConfig,
    Need,
    NMConfig,
    PruneConfig,
    VocabConfig,
    parse_prune_config,
    prune,
)
from slimkit.pruning.configs import PRUNE_METHODS, Scope
from slimkit.pruning.schedules import gradual_prune
from slimkit.pruning.sensitivity import allocate, layer_sensitivity, prunable_layers
from slimkit.pruning.unstructured import nm_layers
from slimkit.pruning.vocab import token_counts, token_embeddings
from slimkit.state import ModelState
from slimkit.steps import StepContext, Variants, register_step
from slimkit.training.trainer import train


@register_step(
    "prune",
    parse_prune_config,
    config=Variants("method", lambda: {n: PRUNE_METHODS.get(n) for n in PRUNE_METHODS}),
)
def prune_step(state: ModelState, config: PruneConfig, ctx: StepContext) -> ModelState:
    """Prune weights, whole channels, heads or neurons: methods in `slimkit list pruning`."""
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
        return ModelState(state.module, state.runtime, notes=[*notes, note])
    if isinstance(config, VocabConfig) and config.unk_token is None:
        config = config.model_copy(update={"unk_token": _unk_token(ctx)})
    batches = ctx.data.train.batches(64) if Need.BATCHES in config.needs() else None
    module = prune(
        state.module, config, ctx.data.sample_inputs(1), batches=batches, between=between
    )
    if isinstance(config, VocabConfig):
        notes.append(_vocab_note(state.module, module, config, ctx))
    notes += sparsity_notes(module, config)
    return ModelState(module, state.runtime, notes=notes)


def sparsity_notes(model: nn.Module, config: PruneConfig) -> list[str]:
    """What a weight-zeroing step left dense, and a warning when the model as a whole is far
    less sparse than the method's nominal sparsity (the targets missed most weights)."""
    nominal = config.nominal_sparsity
    if nominal is None:
        return []
    notes = []
    if isinstance(config, NMConfig):
        _, unfit = nm_layers(model, config)
        if unfit:
            notes.append(f"left dense, input size not a multiple of m={config.m}: {few(unfit)}")
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    total = sum(m.weight.numel() for _, m in layers)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    if total and zeros / total < nominal / 2:
        dense = [n for n, m in layers if not bool((m.weight == 0).any())]
        notes.append(
            f"only {zeros / total:.1%} of all Conv2d/Linear weights are zero, far below the "
            f"nominal {nominal:.0%}: still dense are {few(dense)}; widen targets: or ignore "
            "fewer layers"
        )
    return notes


def _unk_token(ctx: StepContext) -> int:
    """The [UNK] id of the model's tokenizer, found through its architecture record."""
    from slimkit.models import ModelSpec, load_tokenizer_for

    tokenizer = load_tokenizer_for(ModelSpec(source=ctx.arch.source)) if ctx.arch else None
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        raise StepError(
            "method: vocab maps unseen tokens to [UNK], and this model's tokenizer has no "
            "unk_token_id; set unk_token: ID in the step."
        )
    return int(unk)


def _vocab_note(before: nn.Module, after: nn.Module, config: VocabConfig, ctx: StepContext) -> str:
    """How much of the table was kept, and how often held-out text now reads [UNK]."""
    _, table = token_embeddings(before)
    vocab = table.num_embeddings
    remapped = next(m for m in after.modules() if isinstance(m, RemappedEmbedding))
    assert config.unk_token is not None
    counts = token_counts(ctx.data.val.batches(256), vocab)
    remap = remapped.remap.long()
    unseen = (remap == remap[config.unk_token]) & (torch.arange(vocab) != config.unk_token)
    share = float(counts[unseen].sum()) / max(1, int(counts.sum()))
    return (
        f"vocabulary trimmed to {remapped.embedding.num_embeddings:,} of {vocab:,} tokens "
        f"(seen at least {config.min_count}x in training); {share:.2%} of validation tokens "
        "now read [UNK]"
    )


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
