"""Which weight layers a backend quantized and which stayed float, read off the result itself."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx
from torch import nn

from slimkit.layers import select

# ONNX ops whose second input is a layer's weight when it is a stored initializer.
_WEIGHT_OPS = {"Conv", "Gemm", "MatMul"}
# PyTorch layers with weights that torchao's Linear-only configs do not touch.
_TORCH_WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding, nn.LSTM, nn.GRU, nn.RNN)


def ignored_layers(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Names of the weight layers ``patterns`` select: the ones to keep in float."""
    if not patterns:
        return []
    return [
        n
        for n, m in select(model, patterns)
        if isinstance(getattr(m, "weight", None), nn.Parameter)
    ]


def onnx_nodes_for(path: Path, layers: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes whose stored weight is ``<layer>.weight`` for the given layers."""
    wanted = {f"{name}.weight" for name in layers}
    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if len(n.input) > 1 and n.input[1] in wanted]


def onnx_float_layers(path: Path) -> list[str]:
    """Layers whose float weights a node reads directly (not via int8 or NBits ops).

    Conv/Gemm/MatMul read their weight as the second input; an embedding is a Gather whose
    first input is the stored table.
    """
    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    found = []
    for node in graph.node:
        if node.op_type in _WEIGHT_OPS and len(node.input) > 1 and node.input[1] in weights:
            found.append(node.input[1].removesuffix(".weight"))
        elif node.op_type == "Gather" and node.input[0] in weights:
            found.append(node.input[0].removesuffix(".weight"))
    return found


def onnx_weight_layers(path: Path) -> int:
    """How many weight layers (Conv/Gemm/MatMul/embedding Gather) a float graph has."""
    return len(onnx_float_layers(path))


def conv_linear_coverage(model: nn.Module) -> tuple[list[str], list[str]]:
    """``(Conv and Linear layer names, other weight layer names)``: what PT2E quantizes."""
    covered = [
        n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)
    ]
    others = [
        n
        for n, m in model.named_modules()
        if isinstance(m, _TORCH_WEIGHT_LAYERS) and not isinstance(m, nn.Conv1d | nn.Conv2d)
    ]
    return covered, others


def torch_linear_coverage(model: nn.Module) -> tuple[list[str], list[str]]:
    """``(linear layer names, other weight layer names)`` of ``model``."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    others = [n for n, m in model.named_modules() if isinstance(m, _TORCH_WEIGHT_LAYERS)]
    return linears, others
