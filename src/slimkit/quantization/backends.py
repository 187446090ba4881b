"""What each quantization backend can do, in one table that everything reads.

The config validator checks static-int8 options against it, ``quantize`` finds the handler of a
mode on a backend in it, ``backend: auto`` tries the backends it lists for a mode, the recovery
ladder tries the range estimators it lists, and ``slimkit auto`` proposes only modes a backend
runs. A new backend, or a mode on an existing one, is a row or an entry here plus its handler.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slimkit.quantization.configs import Estimator, IntType, QuantBackend

# handler(model, config, *, example_inputs, input_names, out_path, calibration, train_loop,
# check_inputs) -> QuantizedModel
Handler = Callable[..., Any]
ACCURACY_CONTROL = "accuracy-control"  # handler()'s name for a backend's accuracy-aware int8


@dataclass(frozen=True)
class Capabilities:
    """One backend: its handler per mode (a function, or ``module:function`` in
    ``slimkit.quantization`` imported on first use), the static-int8 options it offers, and the
    runtime it serves on."""

    label: str  # how messages name it
    serves: str  # the runtime its models run on
    handlers: dict[str, str | Handler] = field(default_factory=dict)
    estimators: tuple[Estimator, ...] = ()
    activations: tuple[IntType, ...] = ()
    per_tensor_weights: bool = False
    narrow_weights: bool = False  # weight_bits below 8 (simulated inside int8 storage)
    takes_graph: bool = False  # quantizes a model that is only an ONNX graph
    corrections: str = ""  # the error corrections its quantizer applies on every attempt
    model_types: bool = False  # tunes static int8 for a model type (StaticInt8Config.model_type)
    int4_embeddings: bool = False  # static int8 with 4-bit token tables (.int4_embeddings)
    # accuracy-aware static int8: handler(model, config, data=, out_path=, calibration=,
    # max_drop=) -> QuantizedModel, a rung of the recovery ladder
    accuracy_control: str | Handler | None = None


CAPABILITIES: dict[QuantBackend, Capabilities] = {
    QuantBackend.ONNXRUNTIME: Capabilities(
        label="onnxruntime",
        serves="onnxruntime",
        handlers={
            "static-int8": "onnxruntime:quantize_static_int8",
            "dynamic-int8": "onnxruntime:quantize_dynamic_int8",
            "weight-only-int8": "onnxruntime:quantize_weight_only",
            "weight-only-int4": "onnxruntime:quantize_weight_only",
        },
        estimators=(Estimator.MINMAX, Estimator.PERCENTILE, Estimator.ENTROPY),
        activations=(IntType.UINT8, IntType.INT8),
        per_tensor_weights=True,
        takes_graph=True,
    ),
    QuantBackend.TORCHAO: Capabilities(
        label="torchao (PT2E)",
        serves="compile",
        handlers={
            "static-int8": "pt2e:static_int8_pt2e",
            "qat": "pt2e:qat_pt2e",
            "dynamic-int8": "torchao:quantize_torchao",
            "weight-only-int8": "torchao:quantize_torchao",
        },
        estimators=(Estimator.MINMAX, Estimator.MSE),
        activations=(IntType.UINT8,),
        narrow_weights=True,
    ),
    QuantBackend.OPENVINO: Capabilities(
        label="openvino (NNCF)",
        serves="openvino",
        handlers={
            "static-int8": "openvino:quantize_static_nncf",
            "weight-only-int8": "openvino:compress_weights_nncf",
            "weight-only-int4": "openvino:compress_weights_nncf",
            "bf16": "openvino:to_bf16_openvino",
        },
        estimators=(Estimator.MINMAX,),
        takes_graph=True,
        corrections="fast bias correction, and SmoothQuant on transformers",
        model_types=True,
        int4_embeddings=True,
        accuracy_control="openvino:quantize_with_accuracy_control_nncf",
    ),
    QuantBackend.TORCH: Capabilities(
        label="torch",
        serves="eager",
        handlers={"fp16": "half:to_half", "bf16": "half:to_half"},
    ),
}


def register_quantizer(mode: str, backend: QuantBackend | str) -> Callable[[Handler], Handler]:
    """Make the decorated function quantize ``mode`` (a name in ``QUANT_MODES``) on
    ``backend``: a new mode, or an existing mode on another backend. The handler receives the
    model, its config and the keyword arguments of :func:`slimkit.quantize` (take ``**_`` for
    those it does not use) and returns a :class:`~slimkit.quantization.QuantizedModel`.
    """
    caps = CAPABILITIES[QuantBackend(backend)]

    def decorator(handler: Handler) -> Handler:
        if mode in caps.handlers:
            raise ValueError(f"{mode} already has a handler on {caps.label}")
        caps.handlers[mode] = handler
        return handler

    return decorator


def handler(backend: QuantBackend, mode: str) -> Handler | None:
    """The handler of ``mode`` on ``backend`` (``accuracy-control``: its accuracy-aware static
    int8), imported now if the table names it by module: torchao and ONNX Runtime's
    quantization tools take seconds to import, and ``import slimkit`` should not pay for
    backends a run never touches."""
    caps = CAPABILITIES[backend]
    ref = caps.accuracy_control if mode == ACCURACY_CONTROL else caps.handlers.get(mode)
    if ref is None or callable(ref):
        return ref
    module, _, name = ref.partition(":")
    found: Handler = getattr(importlib.import_module(f"slimkit.quantization.{module}"), name)
    return found


def backends_for(mode: str) -> list[QuantBackend]:
    """The backends that run ``mode``, in the table's order (``backend: auto`` tries these)."""
    return [b for b, caps in CAPABILITIES.items() if mode in caps.handlers]


def offering(option: str, value: object) -> list[str]:
    """The labels of the backends whose ``option`` (a tuple field) includes ``value``."""
    return [caps.label for caps in CAPABILITIES.values() if value in getattr(caps, option)]


def words(items: list[str] | tuple[str, ...]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = [str(i) for i in items]
    if len(items) < 2:
        return items[0] if items else "nothing"
    return ", ".join(items[:-1]) + " and " + items[-1]
