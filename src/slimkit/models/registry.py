"""The registry of built-in model factories (``@register_model`` at each definition)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from slimkit.registry import Registry

ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory ``f(num_classes=..., in_channels=..., **kwargs) -> nn.Module``.

    Factories may accept ``num_classes`` and ``in_channels``; slimkit fills them from the data
    set unless the recipe sets them, so one model name serves any data set.
    """
    return MODELS.register(name)
