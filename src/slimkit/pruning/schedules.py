"""Gradual pruning: sparsity rises on a schedule while the model fine-tunes.

Pruning in one shot removes weights the network relied on; pruning a little every ``every``
optimizer steps lets training move their work elsewhere. Zhu & Gupta (2017, "To prune, or not
to prune") use a cubic ramp that prunes fast while many redundant weights remain and slowly
near the target:  s(t) = s_f + (s_i - s_f) * (1 - t / T)^3  for t in [0, T].
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.data.bundle import DataBundle
from slimkit.layers import select
from slimkit.progress import SILENT, Progress
from slimkit.pruning.configs import MagnitudeConfig, Ramp
from slimkit.pruning.unstructured import magnitude_prune
from slimkit.training.trainer import TrainHistory, train


def sparsity_at(
    step: int, total: int, initial: float, final: float, ramp: Ramp, ramp_fraction: float
) -> float:
    """Target sparsity after ``step`` of ``total`` steps; the ramp ends at ``ramp_fraction``."""
    end = max(1, round(total * ramp_fraction))
    progress = min(1.0, step / end)
    if ramp is Ramp.CUBIC:
        return final + (initial - final) * (1.0 - progress) ** 3
    return initial + (final - initial) * progress


def gradual_prune(
    model: nn.Module, config: MagnitudeConfig, data: DataBundle, progress: Progress = SILENT
) -> TrainHistory:
    """Fine-tune ``model`` while pruning it to ``config.sparsity`` on ``config.gradual``'s ramp.

    Every ``every`` steps the weights are re-pruned to the scheduled sparsity; between events
    the current mask is re-applied after each optimizer step, so pruned weights never regrow.
    The last epoch's weights are kept (an earlier, better epoch would be less sparse).
    """
    gradual = config.gradual
    assert gradual is not None
    one_shot = config.model_copy(update={"gradual": None})
    weights: list[torch.Tensor] = [
        w
        for _, m in select(model, config.targets, config.ignore)
        if isinstance(w := getattr(m, "weight", None), nn.Parameter)
    ]
    masks: list[torch.Tensor] = []

    def on_step(step: int, total: int) -> None:
        if step == 1 or step % gradual.every == 0 or step == total:
            target = sparsity_at(
                step,
                total,
                gradual.initial_sparsity,
                config.sparsity,
                gradual.ramp,
                gradual.ramp_fraction,
            )
            if target > 0:
                magnitude_prune(model, one_shot.model_copy(update={"sparsity": target}))
            masks[:] = [w.detach() != 0 for w in weights]
        with torch.no_grad():
            for w, mask in zip(weights, masks, strict=True):
                w.mul_(mask)

    schedule = gradual.finetune.model_copy(update={"keep_best": False})
    history = train(model, data, schedule, progress=progress, on_step=on_step)
    magnitude_prune(model, one_shot)  # exactly the final sparsity, whatever the rounding
    return history
