"""Where a model's time goes: the machine's matrix-multiply peaks, a model's share of them, and
the share of each operator type in a runtime's own profile (ONNX Runtime's profiler, OpenVINO's
performance counters)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch


def matmul_peaks(threads: int, size: int = 1024, repeats: int = 10) -> dict[str, float]:
    """Multiply-accumulates per second of a large fp32 and int8 (int32-accumulating) matmul."""
    torch.set_num_threads(threads)
    out = {}
    for name, make, mm in (
        ("fp32", lambda: torch.randn(size, size), torch.mm),
        (
            "int8",
            lambda: torch.randint(-128, 127, (size, size), dtype=torch.int8),
            torch._int_mm,
        ),
    ):
        a, b = make(), make()
        for _ in range(3):
            mm(a, b)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            mm(a, b)
            times.append(time.perf_counter() - start)
        out[name] = size**3 / statistics.median(times)
    return out


def efficiency(macs: int, batch: int, latency_ms: float, peak: float) -> float:
    """A model's multiply-accumulates per second as a percentage of ``peak``."""
    return round(100.0 * macs * batch / (latency_ms / 1000.0) / peak, 2)


# ONNX Runtime kernels that do the model's multiply-accumulates; the rest is overhead.
MAC_OPS = (
    "QLinearConv",
    "ConvInteger",
    "MatMulInteger",
    "QLinearMatMul",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
    "Conv",
    "FusedConv",
    "MatMul",
    "FusedMatMul",
    "Gemm",
    "MatMulNBits",
)


def time_by_op(artifact: Path, inputs: tuple[torch.Tensor, ...], threads: int) -> dict[str, float]:
    """Share of ONNX Runtime kernel time per op type over 50 runs of ``artifact`` (profiled),
    in a session set up as slimkit serves it (a weight-only graph's weights folded at load)."""
    from collections import Counter

    import onnxruntime as ort

    from slimkit.runtimes.onnxruntime import weight_only
    from slimkit.sessions import session_options

    options = session_options(threads, fold_weights=weight_only(artifact))
    options.enable_profiling = True
    options.profile_file_prefix = str(artifact.with_suffix(""))
    sess = ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])
    feeds = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs, strict=True)}
    for _ in range(50):
        sess.run(None, feeds)
    events = json.loads(Path(sess.end_profiling()).read_text())
    spent: Counter[str] = Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            spent[e["args"]["op_name"]] += e["dur"]
    total = sum(spent.values()) or 1
    return {op: round(100.0 * t / total, 1) for op, t in spent.most_common()}


def time_by_op_openvino(
    artifact: Path, inputs: tuple[torch.Tensor, ...], threads: int
) -> dict[str, float]:
    """Share of OpenVINO's per-node time by node type over 50 runs of the IR ``artifact``
    (``PERF_COUNT``), compiled as slimkit serves it (its recorded precision, latency hint)."""
    from collections import Counter

    from slimkit.runtimes.openvino import core, precision_of

    model = core().read_model(str(artifact))
    config: dict[str, Any] = {
        "PERF_COUNT": True,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
    }
    if precision_of(model) is not None:
        config["INFERENCE_PRECISION_HINT"] = precision_of(model)
    request = core().compile_model(model, "CPU", config).create_infer_request()
    spent: Counter[str] = Counter()
    for _ in range(50):
        request.infer([x.numpy() for x in inputs])
        for info in request.get_profiling_info():
            spent[info.node_type] += info.real_time.total_seconds()
    total = sum(spent.values()) or 1.0
    return {op: round(100.0 * t / total, 1) for op, t in spent.most_common()}


# OpenVINO's node types for each kind of layer :func:`macs_by_kind` counts (a node type is
# matched by its start: FullyConnectedQuantizedLegacy is a Linear too).
OPENVINO_KINDS = {"GroupConvolution": "grouped", "Convolution": "dense", "FullyConnected": "linear"}


def macs_by_kind(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """Share (%) of ``model``'s multiply-accumulates done by each kind of layer: ``dense``
    convolutions, ``grouped`` ones (depthwise) and ``linear`` layers. Set beside a runtime's
    profile, it shows which kind takes more of the time than of the arithmetic."""
    from slimkit.evaluation.macs import layer_macs

    modules = dict(model.named_modules())
    kinds: dict[str, int] = {}
    for name, macs in layer_macs(model, inputs).items():
        layer = modules[name]  # a Conv2d or a Linear: the layers layer_macs counts
        if isinstance(layer, torch.nn.Linear):
            kind = "linear"
        else:
            kind = "grouped" if layer.groups > 1 else "dense"
        kinds[kind] = kinds.get(kind, 0) + macs
    total = sum(kinds.values()) or 1
    return {kind: round(100.0 * n / total, 1) for kind, n in kinds.items()}


def _kind(op: str) -> str | None:
    """The kind of layer an OpenVINO node type runs, or None for other ops."""
    return next((k for node, k in OPENVINO_KINDS.items() if op.startswith(node)), None)


def _does_macs(op: str) -> bool:
    return op in MAC_OPS or _kind(op) is not None


def why_below_peak(
    efficiency_pct: float, shares: dict[str, float], macs: dict[str, float] | None = None
) -> str:
    """Where the time goes: the multiply-accumulating kernels' share of it and their own rate
    against the peak, and the other ops that take the rest. Given the model's ``macs`` by kind
    (:func:`macs_by_kind`) and an OpenVINO profile, each MAC node type's share of the time is
    set beside its share of the arithmetic, and the share of the peak that implies."""
    mac = sum(v for op, v in shares.items() if _does_macs(op))
    own = 100.0 * efficiency_pct / mac if mac else 0.0
    rest = ", ".join([f"{op} {v:.0f}%" for op, v in shares.items() if not _does_macs(op)][:4])
    parts = []
    for op, v in shares.items():
        kind = _kind(op)
        if macs and kind is not None and v >= 1:
            share = macs.get(kind, 0.0)
            parts.append(
                f"{op} {v:.0f}% of the time for {share:.0f}% of the MACs, "
                f"~{efficiency_pct * share / v:.0f}% of the peak"
            )
    by_kind = f" ({'; '.join(parts)})" if parts else ""
    return (
        f"MAC kernels take {mac:.0f}% of the runtime's kernel time{by_kind} and run at "
        f"~{own:.0f}% of the peak themselves; the rest: {rest}"
    )
