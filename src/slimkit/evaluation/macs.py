"""Multiply-accumulates of one forward pass, counted by PyTorch's own FLOP counter.

``FlopCounterMode`` counts the matrix products and convolutions aten actually runs (attention
matmuls included), so the figure follows the real graph rather than a per-layer formula.
One MAC is two FLOPs; element-wise work (bias, activations, norms) is not counted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from slimkit.models.graph import OnnxGraph
from slimkit.runtimes.base import in_dtype, param_dtype


def _sdpa_cpu(
    query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any
) -> int:
    return int(sdpa_flop_count(query, key, value))


# PyTorch counts the GPU attention kernels but has no formula for the CPU one, so attention's
# two matrix products (scores and mixing) would silently drop out of every transformer's MACs.
_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu}


def count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """MACs of ``model(*inputs)`` per example (``inputs`` may hold any batch size); an ONNX
    graph's are counted from the graph (:func:`~slimkit.models.graph.count_graph_macs`)."""
    batch = int(inputs[0].shape[0])
    if isinstance(model, OnnxGraph):
        return model.macs(inputs) // batch
    inputs = in_dtype(inputs, param_dtype(model))  # a half-precision model takes half inputs
    try:
        with torch.inference_mode():
            return _count(model, inputs) // batch
    except (AssertionError, AttributeError):
        # The counter's module tracker expects autograd on tensors some models (DeBERTa's
        # attention) build without it; counted again with gradients recorded, and dropped.
        return _count(model, inputs) // batch


def _count(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
        model(*inputs)
    return int(counter.get_total_flops()) // 2


def layer_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """MACs per example of each Conv2d and Linear in ``model(*inputs)``: where the network's
    arithmetic sits, which its weights do not say (a convolution early on, at high resolution,
    does many MACs per weight; the head does one). A layer that does not run counts 0."""
    batch = int(inputs[0].shape[0])
    macs: dict[str, int] = {}

    def counter(name: str) -> Any:
        def hook(m: nn.Module, _args: Any, out: torch.Tensor) -> None:
            # every weight does one MAC per output position (pixel, or token) of its filter
            weight = m.get_parameter("weight")
            positions = out.numel() // weight.shape[0]
            macs[name] = macs.get(name, 0) + weight.numel() * positions // batch

        return hook

    layers = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    handles = [m.register_forward_hook(counter(n)) for n, m in layers.items()]
    try:
        with torch.inference_mode():
            model(*in_dtype(inputs, param_dtype(model)))
    finally:
        for h in handles:
            h.remove()
    return {n: macs.get(n, 0) for n in layers}
