"""One supervised trainer for baselines and fine-tuning, on Hugging Face Accelerate.

Accelerate owns device placement (CPU here, a GPU or several processes where present), so the
same loop serves a laptop and ``accelerate launch``. The loop restores the weights of the best
validation epoch by default: fine-tuning after compression often peaks before the last epoch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from slimkit.config import Config
from slimkit.data.bundle import DataBundle
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.progress import SILENT, Progress
from slimkit.training.augment import AUGMENTS

LossFn = Callable[[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]], torch.Tensor]


class Optimizer(StrEnum):
    ADAMW = "adamw"
    SGD = "sgd"


class Schedule(StrEnum):
    ONECYCLE = "onecycle"  # warm-up then cosine anneal to ~0; fastest convergence on small nets
    COSINE = "cosine"
    CONSTANT = "constant"


class TrainConfig(Config):
    """How to train: epochs, batch size, optimizer and schedule, regularising knobs."""

    epochs: int = Field(1, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    optimizer: Optimizer = Optimizer.ADAMW
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    schedule: Schedule = Schedule.ONECYCLE
    warmup_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    augment: tuple[str, ...] = ()
    grad_clip: float | None = Field(None, gt=0.0)
    keep_best: bool = True
    seed: int = 0

    @field_validator("augment")
    @classmethod
    def _known_augments(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if name not in AUGMENTS:
                raise ValueError(AUGMENTS.unknown_message(name))
        return names


@dataclass
class TrainHistory:
    """Per-epoch training loss and validation accuracy; ``best_epoch`` is 1-based."""

    loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"loss": self.loss, "val_accuracy": self.val_accuracy, "best_epoch": self.best_epoch}


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer is Optimizer.SGD:
        return torch.optim.SGD(
            params, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _scheduler(
    opt: torch.optim.Optimizer, config: TrainConfig, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule is Schedule.ONECYCLE:
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=config.lr, total_steps=total, pct_start=max(config.warmup_fraction, 1e-3)
        )
    warmup = int(total * config.warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule is Schedule.CONSTANT:
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def sparsity_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Masks of the exact zeros in weight matrices/kernels that are already sparse.

    Fine-tuning a pruned model must not regrow what pruning removed; re-applying these masks
    after every optimizer step keeps the zeros at zero.
    """
    masks = {}
    for name, p in model.named_parameters():
        if p.dim() > 1 and bool((p == 0).any()):
            masks[name] = p.detach() != 0
    return masks


def train(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    *,
    progress: Progress = SILENT,
    keep_sparsity: bool = False,
    loss_fn: LossFn | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainHistory:
    """Train ``model`` in place on ``data.train``, validating on ``data.val`` every epoch.

    ``loss_fn(logits, labels, inputs)`` replaces the default cross-entropy (with the config's
    label smoothing): distillation passes one that also runs the teacher on ``inputs``.
    ``on_step(step, total_steps)`` runs after every optimizer step (1-based): gradual pruning
    re-prunes and re-masks there.

    >>> from slimkit.training import TrainConfig, train
    >>> history = train(net, bundle, TrainConfig(epochs=2, lr=3e-3))  # doctest: +SKIP
    """
    from accelerate import Accelerator

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    loader = data.loader("train", config.batch_size, shuffle=True, seed=config.seed)
    opt = _optimizer(model, config)
    sched = _scheduler(opt, config, total=config.epochs * len(loader))
    model, opt, loader = accelerator.prepare(model, opt, loader)
    masks = sparsity_masks(model) if keep_sparsity else {}
    params = dict(model.named_parameters())
    augments = [AUGMENTS.get(a) for a in config.augment]
    history = TrainHistory()
    best_state, best_acc = None, -1.0
    step, total_steps = 0, config.epochs * len(loader)
    for epoch in range(1, config.epochs + 1):
        model.train()
        total_loss, batches = 0.0, 0
        with progress.task(f"epoch {epoch}/{config.epochs}", total=len(loader)) as task:
            for inputs, labels in loader:
                if augments and inputs[0].dim() == 4:
                    images = inputs[0]
                    for aug in augments:
                        images = aug(images, generator)
                    inputs = (images, *inputs[1:])
                logits = model(*inputs)
                if loss_fn is None:
                    loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
                else:
                    loss = loss_fn(logits, labels, inputs)
                opt.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                if config.grad_clip is not None:
                    accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
                opt.step()
                sched.step()
                with torch.no_grad():
                    for name, mask in masks.items():
                        params[name].mul_(mask)
                step += 1
                if on_step is not None:
                    on_step(step, total_steps)
                total_loss += float(loss.detach())
                batches += 1
                task.advance()
            model.eval()
            logits, y = predict(lambda x: model(*x), data.val.batches(256))
            acc = accuracy(logits, y)
            task.update(
                f"epoch {epoch}/{config.epochs} loss {total_loss / batches:.3f} val {acc:.2f}%"
            )
        history.loss.append(total_loss / batches)
        history.val_accuracy.append(acc)
        if acc > best_acc:
            best_acc, history.best_epoch = acc, epoch
            if config.keep_best:
                best_state = copy.deepcopy(accelerator.unwrap_model(model).state_dict())
    unwrapped = accelerator.unwrap_model(model)
    if best_state is not None:
        unwrapped.load_state_dict(best_state)
    unwrapped.eval()
    return history
