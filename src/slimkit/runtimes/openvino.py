"""OpenVINO on its CPU plugin. Artifact: the IR it loads (``.xml`` with its ``.bin`` weights).

A PyTorch model reaches OpenVINO through slimkit's verified ONNX export and
``openvino.convert_model``; an ONNX graph (an ONNX Runtime int8 result, a user's ``.onnx``) is
converted as it is; an IR NNCF wrote is loaded as it is. Three serving settings are decided, not
assumed:

- **Precision.** OpenVINO runs fp32 models in bf16 on CPUs that have it unless told otherwise;
  this runtime asks for f32, so an fp32 model is served as fp32 and verified at the fp32
  tolerance. bf16 is a quantization mode (``quantize: {mode: bf16, backend: openvino}``), whose
  IR records the precision it is served at. NNCF's int8 and weight-compressed IRs leave their
  float remainder (softmax, norms) to OpenVINO's default, as a plain OpenVINO client does, and so
  does an IR slimkit did not write.
- **Threads.** The run's thread count or one, timed and the faster kept, as on every runtime.
- **Latency hint.** ``PERFORMANCE_HINT: LATENCY`` (one stream): the pipeline times one request
  at a time, as a service answering one caller does. The ``THROUGHPUT`` hint splits the cores
  into streams, so one request then runs on one stream's threads: the one-thread candidate
  above is that case, measured.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import openvino as ov
import torch

from slimkit._io import copy_file
from slimkit.errors import StepError
from slimkit.export.onnx import Agreement, export_onnx
from slimkit.runtimes.base import Engine, Prepared, ServeContext, fewer_threads, register_runtime
from slimkit.sessions import arrangement
from slimkit.state import ModelState

PRECISION_KEY = ["slimkit", "inference_precision"]  # where an IR records its serving precision
_CORE: ov.Core | None = None


def core() -> ov.Core:
    """The process's OpenVINO core (creating one loads the CPU plugin: done once)."""
    global _CORE
    if _CORE is None:
        _CORE = ov.Core()
    return _CORE


def save_ir(model: ov.Model, xml: Path, precision: str = "f32") -> None:
    """Write ``model`` as IR at ``xml`` (+ ``.bin``), weights as they are (no fp16 squeeze),
    recording the precision it is to be served at: ``f32``, ``bf16``, or ``default`` (the
    CPU plugin's choice: bf16 where the CPU has it). Written beside and renamed into place,
    weights first, so a crash never leaves an ``.xml`` whose weights are half written."""
    model.set_rt_info(precision, PRECISION_KEY)
    xml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{xml.name}.", dir=xml.parent) as tmp:
        staged = Path(tmp) / xml.name
        ov.save_model(model, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(staged, xml)


def copy_ir(source: Path, xml: Path) -> None:
    """Copy an IR (``.xml`` and its ``.bin``) to ``xml``, weights first."""
    if source.resolve() != xml.resolve():
        copy_file(source.with_suffix(".bin"), xml.with_suffix(".bin"))
        copy_file(source, xml)


def precision_of(model: ov.Model) -> str | None:
    """The precision an IR slimkit wrote asks to be served at; None for an IR from elsewhere
    (OpenVINO's default then applies, as in a plain OpenVINO client)."""
    if model.has_rt_info(PRECISION_KEY):
        precision = str(model.get_rt_info(PRECISION_KEY).astype(str))
        return None if precision == "default" else precision
    return None


def compile_ir(model: ov.Model, threads: int, precision: str | None) -> ov.CompiledModel:
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    return core().compile_model(model, "CPU", config)


def engine_of(compiled: ov.CompiledModel, names: tuple[str, ...]) -> Engine:
    """A callable from input tensors to logits over one reusable infer request, inputs and
    outputs shared with NumPy rather than copied (most of the call's cost at batch 1 on a small
    CNN: docs/measurements.md, "OpenVINO's precision and call overhead"). Inputs are arranged
    as for ONNX Runtime (:func:`~slimkit.sessions.arrangement`)."""
    request = compiled.create_infer_request()
    arrange = arrangement([i.get_any_name() for i in compiled.inputs], names)

    def engine(inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        arrays = [x.numpy() for x in arrange(inputs)]
        request.infer(arrays, share_inputs=True, share_outputs=True)
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    return engine


def agreement(
    engine: Engine, model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]
) -> Agreement:
    """How closely ``engine`` follows ``model`` on ``inputs``."""
    got = engine(inputs).float().numpy()
    with torch.inference_mode():
        want = model(*inputs).float().numpy()
    return Agreement.between(got, want, "OpenVINO model")


def _write_ir(state: ModelState, xml: Path, ctx: ServeContext) -> bool:
    """Write the state's IR at ``xml``; True when it was converted from the float module here
    (and must be verified against it)."""
    if state.artifact is not None and state.artifact.suffix == ".xml":
        copy_ir(state.artifact, xml)
        return False
    if state.artifact is not None and state.artifact.suffix == ".pt2":
        raise StepError(
            f"This model is {state.artifact}, which OpenVINO does not load here: a .pt2 program "
            "runs on eager or compile."
        )
    if state.artifact is not None:  # an ONNX graph a quantizer wrote
        save_ir(ov.convert_model(str(state.artifact)), xml)
        return False
    with tempfile.TemporaryDirectory(prefix="slimkit-ov-") as tmp:
        onnx_path = export_onnx(
            state.module, ctx.sample_inputs, ctx.input_names, Path(tmp) / "model.onnx"
        )
        save_ir(ov.convert_model(str(onnx_path)), xml)
    return True


def serve_ir(xml: Path, ctx: ServeContext) -> Prepared:
    """Serve an IR as it stands, at its recorded precision, on the faster thread count."""
    model = core().read_model(str(xml))
    precision = precision_of(model)
    many = engine_of(compile_ir(model, ctx.threads, precision), ctx.input_names)
    one = many if ctx.threads == 1 else engine_of(compile_ir(model, 1, precision), ctx.input_names)
    used, note = fewer_threads("openvino", many, one, ctx)
    return Prepared(one if used == 1 else many, xml, notes=(note,) if note else (), threads=used)


@register_runtime("openvino", "OpenVINO, CPU plugin (IR converted from ONNX)", takes_graph=True)
def _prepare(state: ModelState, stem: Path, ctx: ServeContext) -> Prepared:
    xml = stem.with_suffix(".xml")
    converted = _write_ir(state, xml, ctx)
    prepared = serve_ir(xml, ctx)
    if converted:  # written at f32 from the module: the same function, at the fp32 tolerance
        check = agreement(prepared.engine, state.module, ctx.check_inputs or ctx.sample_inputs)
        check.check("fp32", "OpenVINO model")
    return prepared
