"""The ``quantize`` pipeline step: quantize, report coverage, and compare with the float model."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from slimkit.evaluation.latency import measure_latency
from slimkit.quantization import (
    QuantizeConfig,
    QuantizedModel,
    StaticInt8Config,
    parse_quantize_config,
    quantize,
)
from slimkit.runtimes import prepare
from slimkit.state import ModelState
from slimkit.steps import StepContext, register_step

CALIBRATION_BATCH = 32
COMPARE_ROUNDS = 10  # a quick interleaved check; the pipeline's own timing is the full one


@register_step("quantize", parse_quantize_config, final=True)
def quantize_step(state: ModelState, config: QuantizeConfig, ctx: StepContext) -> ModelState:
    """Quantize (int8, int4 or 16-bit) and serve on the runtime the backend targets."""
    calibration = None
    if isinstance(config, StaticInt8Config):
        subset = ctx.data.calibration(config.calibration_samples, seed=ctx.seed)
        calibration = [inputs for inputs, _ in subset.batches(CALIBRATION_BATCH)]
    float_model = copy.deepcopy(state.module)  # torch backends quantize in place
    result = quantize(
        state.module,
        config,
        example_inputs=ctx.data.sample_inputs(8),
        input_names=ctx.data.input_names,
        out_path=ctx.artifact_stem.with_suffix(".onnx"),
        calibration=calibration,
    )
    quantized = ModelState(result.module, result.runtime, onnx_path=result.onnx_path)
    float_state = ModelState(float_model, _float_runtime(config))
    quantized.notes = [_coverage_note(result), _speed_note(float_state, quantized, ctx)]
    return quantized


def _float_runtime(config: QuantizeConfig) -> str:
    return "onnxruntime" if str(config.backend) == "onnxruntime" else "eager"


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
