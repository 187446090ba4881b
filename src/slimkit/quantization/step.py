"""The ``quantize`` pipeline step."""

from __future__ import annotations

from slimkit.quantization import QuantizeConfig, StaticInt8Config, parse_quantize_config, quantize
from slimkit.state import ModelState
from slimkit.steps import StepContext, register_step

CALIBRATION_BATCH = 32


@register_step("quantize", parse_quantize_config, to_onnx=True)
def quantize_step(state: ModelState, config: QuantizeConfig, ctx: StepContext) -> ModelState:
    """Quantize to int8 on a real int8 runtime; calibration comes from the training split."""
    calibration = None
    if isinstance(config, StaticInt8Config):
        subset = ctx.data.calibration(config.calibration_samples, seed=ctx.seed)
        calibration = [inputs for inputs, _ in subset.batches(CALIBRATION_BATCH)]
    path = quantize(
        state.module,
        config,
        example_inputs=ctx.data.sample_inputs(8),
        input_names=ctx.data.input_names,
        out_path=ctx.artifact_stem.with_suffix(".onnx"),
        calibration=calibration,
    )
    return ModelState(state.module, str(config.backend), onnx_path=path)
