"""Shrink a finished ONNX graph without changing what it computes.

On a small int8 model the graph's bookkeeping is a tenth of the file: every node carries a
name like ``layers.0.conv1.weight_bias_DequantizeLinear``, every intermediate value a name as
long, and symmetric int8 weights and int32 biases store all-zero zero points that ONNX assumes
anyway (docs/measurements.md, "ONNX graphs").

What is kept: graph inputs and outputs by name, and for each stored tensor the PyTorch module it
belongs to, as a ``module/k`` prefix, so the size breakdown by layer type still reads it.
Everything that reads names (coverage, exclusion lists) runs before compaction.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _short(i: int) -> str:
    out = ""
    while True:
        i, r = divmod(i, len(_DIGITS))
        out = _DIGITS[r] + out
        if i == 0:
            return out


def compact_graph(graph: onnx.GraphProto, module_names: Iterable[str]) -> None:
    """Rename ``graph``'s values and nodes compactly and drop default zero points, in place."""
    _drop_zero_zero_points(graph)
    modules = sorted(module_names, key=len, reverse=True)
    fixed = {v.name for v in (*graph.input, *graph.output)}
    names: dict[str, str] = {}
    per_module: dict[str, int] = {}

    def rename(name: str) -> str:
        if not name or name in fixed:
            return name
        if name not in names:
            owner = next((m for m in modules if name.startswith((f"{m}.", f"{m}_"))), None)
            if owner is None:
                names[name] = _short(len(names))
            else:
                per_module[owner] = per_module.get(owner, 0) + 1
                names[name] = f"{owner}/{_short(per_module[owner])}"
        return names[name]

    for tensor in graph.initializer:
        tensor.name = rename(tensor.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    graph.ClearField("value_info")


def _drop_zero_zero_points(graph: onnx.GraphProto) -> None:
    """Remove DequantizeLinear zero points that are stored zeros of a signed type (the default)."""
    stored = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        point = stored.get(node.input[2])
        if point is None:
            continue
        values = numpy_helper.to_array(point)
        if values.dtype in (np.int8, np.int32) and not values.any():
            del node.input[2]
    used = {name for node in graph.node for name in node.input}
    used |= {v.name for v in (*graph.input, *graph.output)}
    kept = [t for t in graph.initializer if t.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
