"""The ``quantize`` pipeline step: quantize, report coverage, and compare with the float model."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from slimkit.errors import few
from slimkit.quantization import (
    QUANT_MODES,
    QuantBackend,
    QuantizeConfig,
    QuantizedModel,
    parse_quantize_config,
    quantize,
)
from slimkit.quantization.auto import choose_backend
from slimkit.quantization.inputs import inputs_from
from slimkit.quantization.recovery import recover
from slimkit.runtimes import prepare
from slimkit.state import ModelState
from slimkit.steps import StepContext, Variants, register_step
from slimkit.timing import measure_latency
from slimkit.training.trainer import TrainConfig, train

COMPARE_ROUNDS = 10  # a quick interleaved check; the pipeline's own timing is the full one


@register_step(
    "quantize",
    parse_quantize_config,
    config=Variants("mode", lambda: {n: QUANT_MODES.get(n) for n in QUANT_MODES}),
    final=True,
    takes_graph=True,  # on the backends that quantize ONNX graphs
)
def quantize_step(state: ModelState, config: QuantizeConfig, ctx: StepContext) -> ModelState:
    """Quantize (int8, int4, QAT or 16-bit) and serve on the runtime the backend targets."""
    given = inputs_from(ctx.data, config, state.module, ctx.seed, ctx.progress)
    calibration, train_loop = given.calibration, given.train_loop
    trainer = _trainer(ctx)
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
            example_inputs=given.example_inputs,
            input_names=given.input_names,
            check_inputs=given.check_inputs,
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
        result.agreement.check(config.verified_at())
    quantized = ModelState(result.module, result.runtime, artifact=result.artifact)
    float_state = ModelState(float_model, result.runtime)
    quantized.notes = [*notes, _coverage_note(result), _speed_note(float_state, quantized, ctx)]
    return quantized


def _trainer(ctx: StepContext) -> Callable[[nn.Module, TrainConfig], None]:
    def run(model: nn.Module, config: TrainConfig) -> None:
        train(model, ctx.data, config, progress=ctx.progress)

    return run


def _coverage_note(result: QuantizedModel) -> str:
    note = f"{result.quantized_layers} weight layers quantized"
    if result.float_layers:
        note += f"; {len(result.float_layers)} left in float: {few(result.float_layers, 8)}"
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
                arch=None,
            ).engine
            for name, s in (("float", float_state), ("quantized", quantized))
        }
        stats = measure_latency(engines, inputs, warmup=5, rounds=COMPARE_ROUNDS, per_round=5)
    f, q = stats["float"].p50, stats["quantized"].p50
    where = f"on {quantized.runtime} at batch {ctx.batch_size}"
    if q >= f:
        return (
            f"warning: not faster than the float model {where} "
            f"(p50 {q:.3f} ms quantized vs {f:.3f} ms float)"
        )
    return f"{f / q:.2f}x faster than the float model {where} (p50 {q:.3f} vs {f:.3f} ms)"
