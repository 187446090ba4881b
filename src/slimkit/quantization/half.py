"""Half precision (fp16 / bf16): weights and compute in 16 bits, served by PyTorch."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimkit.quantization.configs import Bf16Config, HalfConfig
from slimkit.quantization.result import QuantizedModel


def to_half(model: nn.Module, config: HalfConfig, **_: Any) -> QuantizedModel:
    """Cast every floating parameter and buffer; the eager runtime casts inputs to match."""
    dtype = torch.bfloat16 if isinstance(config, Bf16Config) else torch.float16
    layers = sum(1 for m in model.modules() if any(True for _ in m.parameters(recurse=False)))
    return QuantizedModel(model.to(dtype), "eager", layers)
