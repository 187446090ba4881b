"""``distill``: train a student on a teacher's soft targets, hints and attention maps.

The teacher runs in eval mode and never trains. Without hints or attention pairs its logits are
computed once over the training split and stored beside the inputs (``cache_teacher``), so each
epoch costs only the student's forward and backward passes. Where the training augments its
images with symmetries of the data (flips, quarter turns), the cached logits are the teacher's
averaged over every view it may draw: one target, whichever view the student is shown, and the
prediction of the teacher's test-time augmentation. Any other augmentation runs it live.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from slimkit.data.bundle import ArrayDataset, DataBundle
from slimkit.distillation.configs import DistillConfig
from slimkit.distillation.features import (
    attention_kl,
    hint_loss,
    hook_pairs,
    projection,
    use_eager_attention,
)
from slimkit.distillation.losses import kd_loss
from slimkit.errors import StepError
from slimkit.models.layout import channels_last
from slimkit.progress import SILENT, Progress
from slimkit.training.augment import View, symmetries
from slimkit.training.config import Precision, TrainConfig
from slimkit.training.params import frozen
from slimkit.training.trainer import TrainHistory, train


class _Distiller(nn.Module):
    """The student and what trains beside it (hint projections); its forward is the student's
    on the first ``n_inputs`` inputs (a cached teacher's logits may ride along after them)."""

    def __init__(self, student: nn.Module, projections: nn.ModuleList, n_inputs: int) -> None:
        super().__init__()
        self.student = student
        self.projections = projections
        self.n_inputs = n_inputs

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.student(*inputs[: self.n_inputs])
        return out


_AUTOCAST = {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}


@torch.inference_mode()
def _with_teacher_logits(
    teacher: nn.Module, data: DataBundle, views: tuple[View, ...], precision: Precision
) -> DataBundle:
    """The training split with the teacher's logits beside its inputs, averaged over ``views``
    of its images (as the trainer augments: the first input, where it holds images), computed
    in the training's ``precision`` as a live teacher would be."""
    if data.train.inputs[0].dim() != 4:
        views = views[:1]  # the identity: augmentation leaves other inputs alone
    device = next((p.device.type for p in teacher.parameters()), "cpu")
    dtype = _AUTOCAST.get(precision)
    with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
        logits = torch.cat(
            [
                torch.stack([teacher(view(x[0]), *x[1:]).float() for view in views]).mean(0)
                for x, _ in data.train.batches(64)
            ]
        )
    train_split = ArrayDataset((*data.train.inputs, logits.clone()), data.train.labels)
    return DataBundle(
        data.name, train_split, data.val, data.test, data.num_classes, data.input_names
    )


def _check_outputs(teacher: nn.Module, student: nn.Module, data: DataBundle) -> None:
    sample = data.sample_inputs(2)
    with torch.inference_mode():
        t, s = teacher.eval()(*sample), student.eval()(*sample)
    if t.shape != s.shape:
        raise StepError(
            f"The teacher outputs {tuple(t.shape[1:])} per example but the student "
            f"{tuple(s.shape[1:])}: soft targets need the same classes. Build the student "
            f"with num_classes: {t.shape[-1]}."
        )


def distill(
    teacher: nn.Module,
    student: nn.Module,
    data: DataBundle,
    config: DistillConfig,
    train_config: TrainConfig,
    progress: Progress = SILENT,
    checkpoint_dir: Path | None = None,
) -> TrainHistory:
    """Train ``student`` in place from ``teacher`` (Hinton KD plus optional hints/attention),
    as ``train_config`` says.

    ``checkpoint_dir`` is the trainer's: an epoch checkpoint there is resumed from.

    >>> distill(teacher, student, bundle, DistillConfig(temperature=2.0), TrainConfig(epochs=5))
    ... # doctest: +SKIP
    """
    _check_outputs(teacher, student, data)
    n = len(data.input_names)
    mask_at = (
        data.input_names.index("attention_mask") if "attention_mask" in data.input_names else None
    )
    undo = [use_eager_attention(m) for m in (teacher, student)] if config.attention else []
    t_cap, s_cap = hook_pairs(teacher, student, config.hints, config.attention)
    try:
        projections = nn.ModuleList()
        if config.hints:
            sample = data.sample_inputs(2)
            with torch.no_grad():
                teacher(*sample), student(*sample)
            projections.extend(
                projection(s_cap.outputs[i], t_cap.outputs[i]) for i in range(len(config.hints))
            )
        views = None
        if config.cache_teacher and config.logits_only:
            views = symmetries(train_config.augment)
        cached = views is not None

        def loss(
            logits: torch.Tensor, labels: torch.Tensor, inputs: tuple[torch.Tensor, ...]
        ) -> torch.Tensor:
            if cached:
                soft = inputs[n]
            else:
                with torch.no_grad():
                    soft = teacher.to(logits.device)(*inputs[:n])
            total = kd_loss(logits, soft, labels, config.temperature, config.alpha)
            for i, proj in enumerate(projections):
                total = total + config.hint_weight * hint_loss(
                    s_cap.outputs[i], t_cap.outputs[i], proj
                )
            mask = inputs[mask_at] if mask_at is not None else None
            for j in range(len(config.hints), len(config.hints) + len(config.attention)):
                total = total + config.attention_weight * attention_kl(
                    s_cap.outputs[j], t_cap.outputs[j], mask
                )
            return total

        # freeze: names the student's layers, so it applies to the student, not the wrapper;
        # train() holds the student channels-last, this block the teacher
        with frozen(student, train_config.freeze), channels_last(teacher, data.sample_inputs(2)):
            train_data = (
                data
                if views is None
                else _with_teacher_logits(teacher, data, views, train_config.precision)
            )
            history = train(
                _Distiller(student, projections, n),
                train_data,
                train_config.model_copy(update={"freeze": ()}),
                progress=progress,
                loss_fn=loss,
                checkpoint_dir=checkpoint_dir,
            )
    finally:
        t_cap.remove()
        s_cap.remove()
        for restore in undo:
            restore()
    student.eval()
    return history
