"""The ``quantize`` pipeline step: quantize, report coverage, and compare with the float model."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from slimkit.data.bundle import DataBundle
from slimkit.distillation.losses import kd_loss
from slimkit.evaluation.latency import measure_latency
from slimkit.progress import SILENT, Progress
from slimkit.quantization import (
    QatConfig,
    QuantBackend,
    QuantizeConfig,
    QuantizedModel,
    StaticInt8Config,
    parse_quantize_config,
    quantize,
)
from slimkit.quantization.auto import choose_backend
from slimkit.quantization.recovery import recover
from slimkit.runtimes import prepare
from slimkit.state import ModelState
from slimkit.steps import StepContext, register_step
from slimkit.training.trainer import TrainConfig, train

CALIBRATION_BATCH = 32
COMPARE_ROUNDS = 10  # a quick interleaved check; the pipeline's own timing is the full one


@register_step("quantize", parse_quantize_config, final=True)
def quantize_step(state: ModelState, config: QuantizeConfig, ctx: StepContext) -> ModelState:
    """Quantize (int8, int4, QAT or 16-bit) and serve on the runtime the backend targets."""
    calibration = None
    if isinstance(config, StaticInt8Config):
        subset = ctx.data.calibration(config.calibration_samples, seed=ctx.seed)
        calibration = [inputs for inputs, _ in subset.batches(CALIBRATION_BATCH)]
    trainer = _trainer(ctx)
    train_loop = None
    if isinstance(config, QatConfig):
        train_loop = qat_train_loop(config, ctx.data, copy.deepcopy(state.module), ctx.progress)
    float_model = copy.deepcopy(state.module)  # quantize_ backends quantize in place
    out_path = ctx.artifact_stem.with_suffix(".onnx")
    notes = []
    if config.backend is QuantBackend.AUTO:
        result, chosen, candidates = choose_backend(
            state.module,
            config,
            data=ctx.data,
            out_path=out_path,
            batch_size=ctx.batch_size,
            calibration=calibration,
            train_loop=train_loop,
        )
        notes.append(
            f"backend auto chose {chosen.backend} (fastest within {config.max_accuracy_drop} "
            "points on validation); candidates: " + "; ".join(c.describe() for c in candidates)
        )
        config = chosen  # recovery continues on the chosen backend
    else:
        result = quantize(
            state.module,
            config,
            example_inputs=ctx.data.sample_inputs(8),
            input_names=ctx.data.input_names,
            check_inputs=ctx.data.held_out_inputs(),
            out_path=out_path,
            calibration=calibration,
            train_loop=train_loop,
        )
    if config.recover:
        result, config, log = recover(
            float_model,
            config,
            result,
            data=ctx.data,
            out_path=out_path,
            batch_size=ctx.batch_size,
            calibration=calibration,
            trainer=trainer,
        )
        if len(log) > 1:  # more than the starting point: the budget was missed at first
            notes.append("recovery: " + "; ".join(log))
    if result.agreement is not None:  # the kept graph must approximate the float model
        result.agreement.check(config.precision)
    quantized = ModelState(result.module, result.runtime, artifact=result.artifact)
    float_state = ModelState(float_model, result.runtime)
    quantized.notes = [*notes, _coverage_note(result), _speed_note(float_state, quantized, ctx)]
    return quantized


def qat_train_loop(
    config: QatConfig, data: DataBundle, teacher: nn.Module, progress: Progress = SILENT
) -> Callable[[nn.Module], None]:
    """The training QAT runs: ``config.train`` on ``data``, distilling from ``teacher`` if asked."""
    loss_fn = None
    if config.distill is not None:
        distill = config.distill
        teacher.eval()

        def loss_fn(
            logits: torch.Tensor, labels: torch.Tensor, inputs: tuple[torch.Tensor, ...]
        ) -> torch.Tensor:
            with torch.no_grad():
                target = teacher(*inputs)
            return kd_loss(logits, target, labels, distill.temperature, distill.alpha)

    def loop(model: nn.Module) -> None:
        train(model, data, config.train, progress=progress, loss_fn=loss_fn)

    return loop


def _trainer(ctx: StepContext) -> Callable[[nn.Module, TrainConfig], None]:
    def run(model: nn.Module, config: TrainConfig) -> None:
        train(model, ctx.data, config, progress=ctx.progress)

    return run


def _coverage_note(result: QuantizedModel) -> str:
    note = f"{result.quantized_layers} weight layers quantized"
    if result.float_layers:
        shown = ", ".join(result.float_layers[:8])
        more = f" and {len(result.float_layers) - 8} more" if len(result.float_layers) > 8 else ""
        note += f"; {len(result.float_layers)} left in float: {shown}{more}"
    return note


def _speed_note(float_state: ModelState, quantized: ModelState, ctx: StepContext) -> str:
    """Time the float and quantized models on the same runtime, interleaved; say which wins."""
    inputs = ctx.data.sample_inputs(ctx.batch_size)
    with tempfile.TemporaryDirectory(prefix="slimkit-cmp-") as tmp:
        engines = {
            name: prepare(
                s,
                Path(tmp) / name,
                input_names=ctx.data.input_names,
                sample_inputs=inputs,
                threads=torch.get_num_threads(),
                arch={},
            ).engine
            for name, s in (("float", float_state), ("quantized", quantized))
        }
        stats = measure_latency(engines, inputs, warmup=5, rounds=COMPARE_ROUNDS, per_round=5)
    f, q = stats["float"].p50, stats["quantized"].p50
    where = f"on {quantized.backend} at batch {ctx.batch_size}"
    if q >= f:
        return (
            f"warning: not faster than the float model {where} "
            f"(p50 {q:.3f} ms quantized vs {f:.3f} ms float)"
        )
    return f"{f / q:.2f}x faster than the float model {where} (p50 {q:.3f} vs {f:.3f} ms)"
