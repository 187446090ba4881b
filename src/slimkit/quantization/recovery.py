"""Guided accuracy recovery: when a quantized model misses its budget, climb a ladder of fixes.

Each rung is tried in order of cost and every attempt is measured on the validation split and
logged with its effect; the climb stops at the first attempt within ``max_accuracy_drop``:

1. per-channel weights (one scale per output channel instead of one per tensor);
2. a better activation range estimator (those the backend offers: percentile, entropy, mse);
3. bias correction / cross-layer equalization: neither ONNX Runtime's nor torchao's quantizer
   offers them, so the rung is logged as unavailable rather than pretended;
4. the backend's own accuracy-aware quantization where it has one (NNCF's accuracy control,
   which returns layers to float in its own ranking until the budget holds, from one
   quantization rather than one per layer);
5. keeping the most sensitive layers in float, where a layer's sensitivity is the validation
   accuracy with only that layer quantized; the worst are kept float one at a time;
6. a short quantization-aware training (one epoch of QAT, torchao PT2E).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from slimkit.data.bundle import DataBundle
from slimkit.errors import RecipeError, StepError
from slimkit.quantization import (
    QatConfig,
    QuantizeConfig,
    QuantizedModel,
    StaticInt8Config,
    backends,
)
from slimkit.quantization._candidates import adopt, build, serve, val_accuracy, variant, workspace
from slimkit.quantization.backends import ACCURACY_CONTROL, CAPABILITIES
from slimkit.quantization.configs import Estimator
from slimkit.quantization.coverage import ignored_layers
from slimkit.training.config import TrainConfig

MAX_FLOAT_SHARE = 0.25  # keep at most a quarter of the layers float: beyond that, little is left
SHORT_QAT = TrainConfig(epochs=1, lr=1e-4)

Attempt = Callable[..., tuple[QuantizedModel, float]]
Trainer = Callable[[nn.Module, TrainConfig], None]


@dataclass
class Climb:
    """The state of a climb: the best attempt so far and the log of every rung."""

    float_accuracy: float
    budget: float
    best: QuantizedModel
    best_config: QuantizeConfig
    best_accuracy: float
    log: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return self.float_accuracy - self.best_accuracy <= self.budget

    def record(self, rung: str, result: QuantizedModel, config: QuantizeConfig, acc: float) -> None:
        self.log.append(f"{rung}: {acc:.2f}% ({acc - self.best_accuracy:+.2f} points)")
        if acc > self.best_accuracy:
            self.best, self.best_config, self.best_accuracy = result, config, acc


def recover(
    model: nn.Module,
    config: QuantizeConfig,
    first: QuantizedModel,
    *,
    data: DataBundle,
    out_path: Path,
    batch_size: int,
    calibration: Iterable[tuple[torch.Tensor, ...]] | None = None,
    trainer: Trainer | None = None,
) -> tuple[QuantizedModel, QuantizeConfig, list[str]]:
    """Climb the ladder from ``first`` (built from float ``model`` with ``config``); see above.

    ``trainer(model, train_config)`` trains on the caller's data; without it QAT is skipped.
    """
    batches = list(calibration) if calibration is not None else None
    with workspace(out_path) as work:
        count = iter(range(1_000_000))

        def attempt(
            cfg: QuantizeConfig, loop: Callable[[nn.Module], None] | None = None
        ) -> tuple[QuantizedModel, float]:
            name = f"try{next(count)}"
            result = build(model, cfg, data, work / f"{name}.onnx", batches, loop)
            return result, val_accuracy(serve(result, data, work, name, batch_size), data)

        first_acc = val_accuracy(serve(first, data, work, "first", batch_size), data)
        climb = Climb(
            val_accuracy(lambda x: model(*x), data),
            config.max_accuracy_drop,
            first,
            config,
            first_acc,
        )
        climb.log.append(
            f"start: {first_acc:.2f}% vs float {climb.float_accuracy:.2f}% "
            f"(budget {config.max_accuracy_drop} points)"
        )
        for rung in (_per_channel, _estimators, _equalization):
            if climb.met:
                break
            rung(climb, attempt, model)
        if not climb.met and batches is not None:
            _accuracy_control(climb, model, data, work, batches, batch_size)
        if not climb.met:
            _keep_sensitive_float(climb, attempt, model)
        if not climb.met and trainer is not None:
            _short_qat(climb, attempt, trainer)
        if not climb.met:
            climb.log.append("budget still missed: keeping the most accurate attempt")
        if climb.best is not first:
            adopt(climb.best, out_path)
    return climb.best, climb.best_config, climb.log


def _variant(config: QuantizeConfig, **changes: object) -> QuantizeConfig | None:
    """The changed config, or None where the backend cannot honour the change."""
    try:
        return variant(config, **changes)
    except RecipeError:
        return None


def _per_channel(climb: Climb, attempt: Attempt, model: nn.Module) -> None:
    cfg = climb.best_config
    if getattr(cfg, "per_channel", True):
        climb.log.append("per-channel weights: already per-channel")
        return
    variant = _variant(cfg, per_channel=True)
    if variant is None:
        climb.log.append(f"per-channel weights: not offered by {cfg.backend}")
        return
    result, acc = attempt(variant)
    climb.record("per-channel weights", result, variant, acc)


def _estimators(climb: Climb, attempt: Attempt, model: nn.Module) -> None:
    cfg = climb.best_config
    if not isinstance(cfg, StaticInt8Config):
        climb.log.append(f"range estimator: {cfg.mode} has no calibrated activation ranges")
        return
    caps = CAPABILITIES.get(cfg.backend)  # the backend's own range estimators, beyond minmax
    for estimator in caps.estimators if caps is not None else ():
        if estimator in (cfg.estimator, Estimator.MINMAX) or climb.met:
            continue
        variant = _variant(climb.best_config, estimator=str(estimator))
        if variant is None:
            continue
        try:
            result, acc = attempt(variant)
        except StepError as err:  # a calibrator that cannot read this graph: try the next
            climb.log.append(f"range estimator {estimator}: {err}")
            continue
        climb.record(f"range estimator {estimator}", result, variant, acc)


def _equalization(climb: Climb, attempt: Attempt, model: nn.Module) -> None:
    backend = climb.best_config.backend
    caps = CAPABILITIES.get(backend)
    if caps is not None and caps.corrections:
        climb.log.append(f"error corrections: {backend}'s quantizer applied {caps.corrections}")
        return
    climb.log.append(
        f"bias correction / cross-layer equalization: not offered by {backend}'s quantizer; skipped"
    )


def sensitivity(
    attempt: Attempt, config: QuantizeConfig, layers: list[str]
) -> Iterator[tuple[str, float]]:
    """``(layer, validation accuracy with only that layer quantized)`` for each layer."""
    for layer in layers:
        others = tuple(n for n in layers if n != layer)
        variant = _variant(config, ignore=[*config.ignore, *others])
        if variant is None:
            return
        try:
            yield layer, attempt(variant)[1]
        except StepError:
            continue


def _keep_sensitive_float(climb: Climb, attempt: Attempt, model: nn.Module) -> None:
    cfg = climb.best_config
    already = set(ignored_layers(model, cfg.ignore))
    layers = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear) and n not in already
    ]
    if _variant(cfg, ignore=["re:.*"]) is None or not layers:
        climb.log.append(f"keep sensitive layers float: {cfg.mode} quantizes the whole model")
        return
    ranked = sorted(sensitivity(attempt, cfg, layers), key=lambda item: item[1])
    climb.log.append(
        "sensitivity (accuracy with only that layer quantized): "
        + ", ".join(f"{n} {a:.2f}%" for n, a in ranked[:5])
    )
    keep: list[str] = []
    for layer, _ in ranked[: max(1, int(len(layers) * MAX_FLOAT_SHARE))]:
        keep.append(layer)
        variant = _variant(cfg, ignore=[*cfg.ignore, *keep])
        if variant is None:
            break
        result, acc = attempt(variant)
        climb.record(f"keep {', '.join(keep)} float", result, variant, acc)
        if climb.met:
            break


def _accuracy_control(
    climb: Climb,
    model: nn.Module,
    data: DataBundle,
    work: Path,
    batches: list[tuple[torch.Tensor, ...]],
    batch_size: int,
) -> None:
    cfg = climb.best_config
    build_it = backends.handler(cfg.backend, ACCURACY_CONTROL)
    if build_it is None or not isinstance(cfg, StaticInt8Config):
        climb.log.append(
            f"accuracy-aware quantization: not offered by {cfg.backend} for {cfg.mode}"
        )
        return
    try:
        result = build_it(
            model,
            cfg,
            data=data,
            out_path=work / "controlled.onnx",
            calibration=batches,
            max_drop=climb.budget,
        )
    except (StepError, RuntimeError) as err:  # NNCF raises its own errors as RuntimeError
        climb.log.append(f"accuracy-aware quantization: {str(err).splitlines()[0]}")
        return
    acc = val_accuracy(serve(result, data, work, "controlled", batch_size), data)
    climb.record(f"{CAPABILITIES[cfg.backend].label} accuracy control", result, cfg, acc)


def _short_qat(climb: Climb, attempt: Attempt, trainer: Trainer) -> None:
    if not isinstance(climb.best_config, StaticInt8Config):
        climb.log.append(f"short QAT: not offered for {climb.best_config.mode}")
        return
    variant = QatConfig(
        train=SHORT_QAT, ignore=climb.best_config.ignore, max_accuracy_drop=climb.budget
    )
    try:
        result, acc = attempt(variant, lambda m: trainer(m, SHORT_QAT))
    except StepError as err:
        climb.log.append(f"short QAT: {err}")
        return
    climb.record("short QAT (1 epoch, torchao PT2E)", result, variant, acc)
