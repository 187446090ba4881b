"""A model that is only an ONNX graph: evaluated, benchmarked and quantized like any other.

Users meet ONNX files from two sides: slimkit's own artifacts
(``runs/.../artifacts/03-quantize.onnx``) and graphs converted by other tools (tf2onnx from
Keras, optimum from transformers). Such a file has no PyTorch weights, so :class:`OnnxGraph`
wraps it in a module whose forward runs ONNX Runtime and which describes itself from the graph:
the parameters its weights hold (stored int8 weights and int4 blocks counted as the values they
represent), the non-zeros among them, and the MACs of its matrix products and convolutions at
the input shapes given. Steps that need PyTorch weights (pruning, distillation, fine-tuning)
refuse it by name; quantization on ONNX Runtime and serving on a runtime that loads ONNX take it
as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from slimkit._io import atomic_path, copy_file
from slimkit.errors import ModelLoadError

# Inputs that hold a quantizer's scale or zero point rather than a weight, by op type.
_NOT_WEIGHTS = {
    "QuantizeLinear": {1, 2},
    "DequantizeLinear": {1, 2},
    "MatMulInteger": {2, 3},
    "ConvInteger": {2, 3},
    "QLinearConv": {1, 2, 4, 5, 6, 7},
    "QLinearMatMul": {1, 2, 4, 5, 6, 7},
    "MatMulNBits": {2, 3, 4, 5},
}
# Where each compute op takes its left operand (A / X) and its weight (B / W).
_MATMULS = {"MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0, "Gemm": 0, "MatMulNBits": 0}
_CONVS = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
_INTS = {
    onnx.TensorProto.INT8,
    onnx.TensorProto.UINT8,
    onnx.TensorProto.INT4,
    onnx.TensorProto.UINT4,
}


@dataclass(frozen=True)
class Weight:
    """One stored weight: the op that consumes it, the values it represents, how many of those
    are not zero."""

    op: str
    values: int
    nonzero: int


def _consumers(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    out: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            out.setdefault(name, []).append((node, i))
    return out


def _array(t: onnx.TensorProto) -> np.ndarray:
    a = numpy_helper.to_array(t)
    return a if a.dtype.kind in "biuf" else a.astype(np.int8)  # int4 types: their values


def graph_weights(graph: onnx.GraphProto) -> dict[str, Weight]:
    """The graph's weights by initializer name: float and 8/4-bit tensors of more than one value
    and int32 biases behind a ``DequantizeLinear``; not the quantizers' scales and zero points,
    nor shape constants. An exporter stores identical tensors once (the zero biases of a
    freshly initialised model), so a graph can hold fewer values than its PyTorch model."""
    consumers = _consumers(graph)
    inits = {t.name: t for t in graph.initializer}
    weights = {}
    for name, t in inits.items():
        uses = consumers.get(name, [])
        if not uses or any(i in _NOT_WEIGHTS.get(n.op_type, ()) for n, i in uses):
            continue
        node, index = uses[0]
        quantized = t.data_type in _INTS or node.op_type == "DequantizeLinear"
        if int(np.prod(t.dims)) < 2 or not (t.data_type in _FLOATS or quantized):
            continue
        a = _array(t)
        if node.op_type == "MatMulNBits":
            k, n = (next(x.i for x in node.attribute if x.name == key) for key in ("K", "N"))
            weights[name] = Weight("MatMul", k * n, k * n)
            continue
        zero = _zero_point(node, index, inits, a.shape) if quantized else 0
        nonzero = np.count_nonzero(a.astype(np.int64) != zero) if quantized else np.count_nonzero(a)
        weights[name] = Weight(_compute_op(node, consumers), a.size, int(nonzero))
    return weights


def _zero_point(
    node: onnx.NodeProto, index: int, inits: dict[str, onnx.TensorProto], shape: tuple[int, ...]
) -> np.ndarray | int:
    """The value that means zero in a stored quantized weight (broadcast along its axis)."""
    position = {"DequantizeLinear": 2, "MatMulInteger": 3, "ConvInteger": 3, "QLinearConv": 5}
    if node.op_type not in position or index not in (0, 1, 3):
        return 0
    at = position[node.op_type]
    if len(node.input) <= at or node.input[at] not in inits:
        return 0
    zero = _array(inits[node.input[at]]).astype(np.int64)
    if zero.ndim == 0 or zero.size == 1:
        return int(zero.reshape(-1)[0])
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if node.op_type == "MatMulInteger":
        axis = len(shape) - 1  # per output column
    if node.op_type in ("ConvInteger", "QLinearConv"):
        axis = 0
    view = [1] * len(shape)
    view[axis % len(shape)] = zero.size
    return zero.reshape(view)


def _compute_op(
    node: onnx.NodeProto, consumers: dict[str, list[tuple[onnx.NodeProto, int]]]
) -> str:
    """The op a weight serves: through a DequantizeLinear, the op that consumes its output."""
    if node.op_type == "DequantizeLinear":
        after = consumers.get(node.output[0], [])
        if after:
            return _compute_op(after[0][0], consumers)
    return {"MatMulInteger": "MatMul", "ConvInteger": "Conv", "QLinearConv": "Conv"}.get(
        node.op_type, node.op_type
    )


def _value_shapes(
    model: onnx.ModelProto, names: set[str], inputs: tuple[torch.Tensor, ...]
) -> dict[str, tuple[int, ...]]:
    """The shapes ``names`` take when the graph runs on ``inputs``: one run on ONNX Runtime with
    those values made outputs and its optimizations off, so every node runs as written. Shape
    inference would do without the run, but it stops at ops only ONNX Runtime knows
    (``MatMulNBits``) and at the shapes a text model computes from its mask."""
    from slimkit.sessions import feeds

    work = onnx.ModelProto()
    work.CopyFrom(model)
    stored = {t.name: tuple(t.dims) for t in model.graph.initializer}
    wanted = sorted(names - set(stored))
    declared = {o.name for o in work.graph.output}
    work.graph.output.extend(onnx.ValueInfoProto(name=n) for n in wanted if n not in declared)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    sess = ort.InferenceSession(
        work.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    values = sess.run(wanted, feeds(sess, _data_names(inputs), inputs))
    return {**stored, **{n: v.shape for n, v in zip(wanted, values, strict=True)}}


def count_graph_macs(model: onnx.ModelProto, inputs: tuple[torch.Tensor, ...]) -> int:
    """MACs of the graph's matrix products and convolutions (int8 and 4-bit ones included) on
    ``inputs``, for the whole batch; nodes inside control flow (``If``, ``Loop``) are not
    counted."""
    nodes = [n for n in model.graph.node if n.op_type in _MATMULS or n.op_type in _CONVS]
    names = set()
    for n in nodes:
        weight = _CONVS.get(n.op_type, 1)
        names |= {n.input[0], n.input[weight], n.output[0]}
    shapes = _value_shapes(model, names, inputs)
    total = 0
    for node in nodes:
        out = shapes[node.output[0]]
        if node.op_type in _CONVS:
            total += int(np.prod(out)) * int(np.prod(shapes[node.input[_CONVS[node.op_type]]][1:]))
            continue
        a = shapes[node.input[0]]
        trans_a = any(x.name == "transA" and x.i for x in node.attribute)
        k = a[0] if node.op_type == "Gemm" and trans_a else a[-1]
        total += int(np.prod(out)) * int(k)
    return total


class OnnxGraph(nn.Module):
    """An ONNX file as a model: forward runs it on ONNX Runtime; the figures come from the graph.

    ``path`` is read, never written. A graph whose weights need files beside it (external data)
    loads them from its own folder only, as the ONNX library enforces.

    >>> graph = OnnxGraph(Path("runs/demo/artifacts/03-quantize.onnx"))  # doctest: +SKIP
    >>> graph.params  # doctest: +SKIP
    19186
    """

    serving_runtime = "onnxruntime"

    def __init__(self, path: Path) -> None:
        super().__init__()
        try:
            onnx.checker.check_model(str(path))
            proto = onnx.load(str(path))
        except Exception as err:  # the ONNX library raises several unrelated types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelLoadError(
                f"{path} is not an ONNX model ONNX can read: {first}. Pass an .onnx file "
                "exported by torch.onnx, tf2onnx, optimum or slimkit."
            ) from None
        self.path = path
        weights = graph_weights(proto.graph)
        self.params = sum(w.values for w in weights.values())
        self.nonzero = sum(w.nonzero for w in weights.values())
        self.layer_types = {name: w.op for name, w in weights.items()}
        self.external = any(
            t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer
        )
        stored = {t.name for t in proto.graph.initializer}
        self.input_names = tuple(i.name for i in proto.graph.input if i.name not in stored)
        self._macs: dict[tuple[tuple[int, ...], ...], int] = {}
        self._session: Any = None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        from slimkit.sessions import feeds, session

        if self._session is None:
            self._session = session(self.path, torch.get_num_threads())
        names = _data_names(inputs)
        out = self._session.run(None, feeds(self._session, names, inputs))[0]
        return torch.from_numpy(np.ascontiguousarray(out))

    def macs(self, inputs: tuple[torch.Tensor, ...]) -> int:
        """:func:`count_graph_macs` on ``inputs`` (remembered per input shape)."""
        shapes = tuple(tuple(x.shape) for x in inputs)
        if shapes not in self._macs:
            self._macs[shapes] = count_graph_macs(onnx.load(str(self.path)), inputs)
        return self._macs[shapes]

    def save_copy(self, path: Path) -> None:
        """Write the graph to ``path``; weights kept in external data go to ``<path>.data``."""
        if not self.external:
            copy_file(self.path, path)
            return
        proto = onnx.load(str(self.path))
        with atomic_path(path) as tmp:
            onnx.save(proto, str(tmp), save_as_external_data=True, location=f"{path.name}.data")

    def __getstate__(self) -> dict[str, Any]:
        # A live session cannot be copied; a copy opens its own on first use.
        return {**self.__dict__, "_session": None}

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, params={self.params:,}"


def _data_names(inputs: tuple[torch.Tensor, ...]) -> tuple[str, ...]:
    """The names slimkit's data sets give these inputs: ``(input_ids, attention_mask)`` for
    token tensors, ``pixels`` for an image (fed by position when the graph names it otherwise)."""
    if inputs and not inputs[0].is_floating_point():
        return ("input_ids", "attention_mask")[: len(inputs)]
    return tuple(f"input_{i}" for i in range(len(inputs)))
