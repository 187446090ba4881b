"""One supervised trainer for baselines, fine-tuning, distillation and QAT, on Accelerate.

Accelerate owns device placement, mixed precision, gradient accumulation and data parallelism,
so the same loop serves a laptop and ``accelerate launch`` / ``torchrun`` on several processes
or machines. ``batch_size`` is the *global* batch: Accelerate splits each batch across the
processes and averages their gradients, so two processes reproduce a one-process run.

The loop restores the weights of the best validation epoch by default: fine-tuning after
compression often peaks before the last epoch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.data.bundle import DataBundle
from slimkit.evaluation.metrics import accuracy, predict
from slimkit.models.layout import channels_last
from slimkit.progress import SILENT, Progress
from slimkit.regularization import induced_sparsity, penalty
from slimkit.regularization.penalties import ChannelGroups
from slimkit.training import checkpoint
from slimkit.training.augment import AUGMENTS
from slimkit.training.config import Optimizer, Schedule, TrainConfig, Unfreeze
from slimkit.training.params import (
    depth_groups,
    frozen,
    layerwise_lrs,
    require_trainable,
    unfrozen_at,
)

LossFn = Callable[[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]], torch.Tensor]


@dataclass
class TrainHistory:
    """Per-epoch loss and validation accuracy; ``best_epoch`` is 1-based.

    ``sparsity`` is what the regularizer induced (see :func:`induced_sparsity`), when one ran.
    ``resumed_after`` is the epoch an interrupted run's checkpoint had reached (0: fresh).
    """

    loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    sparsity: dict[str, float] = field(default_factory=dict)
    resumed_after: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "loss": self.loss,
            "val_accuracy": self.val_accuracy,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "sparsity": self.sparsity,
            "resumed_after": self.resumed_after,
        }


def _param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """One optimizer group per depth block when LRs differ by depth, else one group."""
    blocks = depth_groups(model)
    if config.layer_lr_decay is None:
        lrs = [config.lr] * len(blocks)
    else:
        lrs = layerwise_lrs(len(blocks), config.lr, config.layer_lr_decay)
    groups = []
    for block, lr in zip(blocks, lrs, strict=True):
        params = [p for _, p in block if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": lr})
    return groups


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, config)
    if config.optimizer is Optimizer.SGD:
        # SGD's own weight_decay is an L2 penalty in the gradient; decay is applied decoupled
        # after each step instead (see _decay), so weight_decay means the same for both.
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def _decay(opt: torch.optim.Optimizer, config: TrainConfig) -> None:
    if config.optimizer is Optimizer.SGD and config.weight_decay:
        with torch.no_grad():
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.mul_(1.0 - group["lr"] * config.weight_decay)


def _scheduler(
    opt: torch.optim.Optimizer, config: TrainConfig, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule is Schedule.ONECYCLE:
        pct = max(config.warmup_fraction, 1e-3)
        # OneCycleLR divides by (pct_start * total - 1): a warmup of exactly one step, as in a
        # 10-step run at the default 0.1, divides by zero. Half a step warms up just as little.
        if float(pct * total) - 1 == 0:
            pct = 0.5 / total
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total, pct_start=pct
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


def _accelerator(config: TrainConfig) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration

    precision = config.precision.accelerate_name
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", precision) != precision:
        # Accelerate's state is one per process, made for one training script; slimkit runs
        # several training phases in a process, each with its own precision.
        AcceleratorState._reset_state()
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=precision,
        gradient_accumulation_steps=config.grad_accumulation,
        dataloader_config=DataLoaderConfiguration(
            split_batches=True, use_seedable_sampler=True, data_seed=config.seed
        ),
    )


def train(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    *,
    progress: Progress = SILENT,
    keep_sparsity: bool = False,
    loss_fn: LossFn | None = None,
    on_step: Callable[[int, int], None] | None = None,
    checkpoint_dir: Path | None = None,
) -> TrainHistory:
    """Train ``model`` in place on ``data.train``, validating on ``data.val`` every epoch.

    ``loss_fn(logits, labels, inputs)`` replaces the default cross-entropy (with the config's
    label smoothing): distillation passes one that also runs the teacher on ``inputs``. The
    config's regularization penalty is added to either. ``on_step(step, total_steps)`` runs
    after every optimizer step (1-based): gradual pruning re-prunes and re-masks there. With
    ``checkpoint_dir``, each epoch ends with an atomic checkpoint there, and a call that finds
    one resumes after its epoch. A convolutional network trains with its weights channels-last
    (:func:`~slimkit.models.layout.channels_last`) and leaves in PyTorch's default layout.

    >>> from slimkit.training import TrainConfig, train
    >>> history = train(net, bundle, TrainConfig(epochs=2, lr=3e-3))  # doctest: +SKIP
    """
    with frozen(model, config.freeze), channels_last(model, data.sample_inputs(2)):
        return _fit(
            model,
            data,
            config,
            progress=progress,
            keep_sparsity=keep_sparsity,
            loss_fn=loss_fn,
            on_step=on_step,
            checkpoint_dir=checkpoint_dir,
        )


def _fit(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    *,
    progress: Progress,
    keep_sparsity: bool,
    loss_fn: LossFn | None,
    on_step: Callable[[int, int], None] | None,
    checkpoint_dir: Path | None,
) -> TrainHistory:
    """:func:`train`'s loop, with ``config.freeze`` already applied."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    require_trainable(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    blocks = [[n for n, _ in block] for block in depth_groups(model)]
    groups = None
    if config.regularize.group_lasso:
        groups = ChannelGroups.of(model, data.sample_inputs(1))
    accelerator = _accelerator(config)
    loader = data.loader("train", config.batch_size, shuffle=True, seed=config.seed)
    opt = _optimizer(model, config)
    steps_per_epoch = math.ceil(len(loader) / config.grad_accumulation)
    total_steps = config.epochs * steps_per_epoch
    sched = _scheduler(opt, config, total=total_steps)
    model, opt, loader, sched = accelerator.prepare(model, opt, loader, sched)
    inner = accelerator.unwrap_model(model)
    masks = sparsity_masks(inner) if keep_sparsity else {}
    params = dict(inner.named_parameters())
    augments = [AUGMENTS.get(a) for a in config.augment]
    history = TrainHistory()
    best_state: dict[str, torch.Tensor] | None = None
    best_acc, stale, step, first_epoch = -1.0, 0, 0, 1

    saved = checkpoint.load(checkpoint_dir) if checkpoint_dir is not None else None
    if saved is not None:
        try:
            inner.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            history = TrainHistory(**{**saved["history"], "resumed_after": saved["epoch"]})
            best_state, best_acc, stale = saved["best_state"], saved["best_acc"], saved["stale"]
            step, first_epoch = int(saved["step"]), int(saved["epoch"]) + 1
            torch.set_rng_state(saved["rng"])
            generator.set_state(saved["generator"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise checkpoint.damaged(checkpoint_dir, err) from None  # type: ignore[arg-type]

    for epoch in range(first_epoch, config.epochs + 1):
        if config.unfreeze is Unfreeze.GRADUAL:
            thawed = {n for block in blocks[-unfrozen_at(epoch, len(blocks)) :] for n in block}
            for name, p in params.items():
                p.requires_grad_(name in trainable and name in thawed)
        loader.set_epoch(epoch - 1)
        model.train()
        total_loss, batches = 0.0, 0
        with progress.task(f"epoch {epoch}/{config.epochs}", total=len(loader)) as task:
            for inputs, labels in loader:
                if augments and inputs[0].dim() == 4:
                    images = inputs[0]
                    for aug in augments:
                        images = aug(images, generator)
                    inputs = (images, *inputs[1:])
                with accelerator.accumulate(model), accelerator.autocast():
                    logits = model(*inputs)
                    if loss_fn is None:
                        loss = F.cross_entropy(
                            logits, labels, label_smoothing=config.label_smoothing
                        )
                    else:
                        loss = loss_fn(logits, labels, inputs)
                    if config.regularize.active:
                        loss = loss + penalty(inner, config.regularize, groups)
                    accelerator.backward(loss)
                    if config.grad_clip is not None and accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                if accelerator.sync_gradients:
                    _decay(opt, config)
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
            best_acc, history.best_epoch, stale = acc, epoch, 0
            if config.keep_best:
                best_state = copy.deepcopy(inner.state_dict())
        else:
            stale += 1
        history.stopped_early = config.patience is not None and stale >= config.patience
        if checkpoint_dir is not None and accelerator.is_main_process:
            checkpoint.save(
                checkpoint_dir,
                {
                    "epoch": epoch,
                    "step": step,
                    "model": inner.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "history": history.to_dict(),
                    "best_state": best_state,
                    "best_acc": best_acc,
                    "stale": stale,
                    "rng": torch.get_rng_state(),
                    "generator": generator.get_state(),
                },
            )
        if history.stopped_early:
            break
    if best_state is not None:
        inner.load_state_dict(best_state)
    if config.regularize.active:
        history.sparsity = induced_sparsity(inner, groups)
    # Mixed precision wraps the model's own forward in autocast; take the wrapper off, so the
    # trained model computes, exports and serves in fp32 again.
    accelerator.unwrap_model(model, keep_fp32_wrapper=False).eval()
    accelerator.free_memory()
    return history
