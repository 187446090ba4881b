"""Feature extraction: a frozen backbone's features computed once, then only the head trains.

Running the backbone once per example instead of once per example per epoch is what makes
feature extraction cheap: after one pass the head's epochs cost almost nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from slimkit.data.bundle import ArrayDataset, DataBundle
from slimkit.errors import StepError
from slimkit.layers import output_layers
from slimkit.models.layout import channels_last
from slimkit.progress import SILENT, Progress
from slimkit.training.config import TrainConfig
from slimkit.training.trainer import TrainHistory, train


@torch.inference_mode()
def head_inputs(model: nn.Module, head: nn.Module, split: ArrayDataset) -> ArrayDataset:
    """What ``head`` receives for each example of ``split``, captured with a forward hook."""
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    try:
        model.eval()
        for inputs, _ in split.batches(64):
            model(*inputs)
    finally:
        hook.remove()
    return ArrayDataset((torch.cat(captured),), split.labels)


def train_head(
    model: nn.Module, data: DataBundle, config: TrainConfig, progress: Progress = SILENT
) -> TrainHistory:
    """Train only the model's head (its last Linear) on cached backbone features, in place."""
    if config.augment:
        raise StepError(
            "Feature extraction computes each example's features once, so augmentation "
            f"({', '.join(config.augment)}) cannot apply. Drop augment: or fine-tune fully."
        )
    heads = output_layers(model)
    if not heads:
        raise StepError("Feature extraction trains the model's head, its last Linear; it has none.")
    head = heads[0]
    with progress.task("computing backbone features"), channels_last(model, data.sample_inputs(2)):
        features = DataBundle(
            f"{data.name}-features",
            head_inputs(model, head, data.train),
            head_inputs(model, head, data.val),
            head_inputs(model, head, data.test),
            data.num_classes,
            ("features",),
        )
    history = train(head, features, config, progress=progress)
    model.eval()
    return history
