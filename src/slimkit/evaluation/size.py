"""Parameter counts and non-zeros (what a model holds), and where an artifact's bytes go."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from torch import nn

from slimkit.models.graph import OnnxGraph


def count_params(model: nn.Module) -> int:
    """Number of parameters (tied parameters counted once); an ONNX graph's weights."""
    if isinstance(model, OnnxGraph):
        return model.params
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Number of parameters that are not exactly zero (tied parameters counted once)."""
    if isinstance(model, OnnxGraph):
        return model.nonzero
    with torch.no_grad():
        return sum(_nonzero(p) for p in model.parameters())


def _nonzero(p: torch.Tensor) -> int:
    if type(p) in (torch.Tensor, nn.Parameter):
        return int(torch.count_nonzero(p))
    # A quantized tensor subclass (torchao's Int8Tensor, ...) implements few aten ops; count
    # what it represents.
    dense = p.dequantize() if hasattr(p, "dequantize") else None
    return int(torch.count_nonzero(dense)) if isinstance(dense, torch.Tensor) else p.numel()


def artifact_bytes(path: Path) -> int:
    """Bytes on disk of the model file ``path`` with the files it loads beside it: an OpenVINO
    IR's ``.bin`` weights, an ONNX graph's external data."""
    extra = [path.with_suffix(".bin")] if path.suffix == ".xml" else []
    extra.append(path.with_name(f"{path.name}.data"))
    return path.stat().st_size + sum(p.stat().st_size for p in extra if p.is_file())


def _artifact_tensors(path: Path) -> dict[str, int]:
    """Bytes of each stored tensor of an artifact, by stored name ({} for opaque formats)."""
    if path.suffix == ".safetensors":
        # The header alone gives every tensor's byte range: no tensor data is read.
        with path.open("rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        return {
            name: entry["data_offsets"][1] - entry["data_offsets"][0]
            for name, entry in header.items()
            if name != "__metadata__"
        }
    if path.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(path), load_external_data=False).graph
        return {t.name: numpy_helper.to_array(t).nbytes for t in graph.initializer}
    return {}


def bytes_by_layer_type(model: nn.Module, artifact: Path) -> dict[str, int]:
    """The artifact's tensor bytes, summed by the type of layer each tensor belongs to.

    A stored name is matched to the longest module path it starts with (``stem.0.weight`` and
    ONNX Runtime's ``stem.0.weight_quantized`` both belong to ``stem.0``, a Conv2d); tensors
    that name no module (constants the exporter made) count as ``other``.
    """
    types = {name: type(m).__name__ for name, m in model.named_modules() if name}
    if isinstance(model, OnnxGraph):  # a graph's weights, by the op that consumes each
        types = model.layer_types
    out: dict[str, int] = {}
    for stored, size in _artifact_tensors(artifact).items():
        parts = stored.replace("/", ".").split(".")
        kind = "other"
        for end in range(len(parts), 0, -1):
            prefix = ".".join(parts[:end])
            if prefix in types:
                kind = types[prefix]
                break
        out[kind] = out.get(kind, 0) + size
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
