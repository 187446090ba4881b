"""Model sources, built-in nets and architecture-as-data persistence."""

from slimkit.models import (  # noqa: F401  (register the built-in models and the .onnx form)
    efficientnet,
    graph_source,
    text,
    vision,
)
from slimkit.models.persist import save_model
from slimkit.models.registry import MODELS, register_model
from slimkit.models.sources import (
    SOURCE_FORMS,
    ModelSpec,
    arch_of,
    build_model,
    load_tokenizer_for,
    load_weights,
)

__all__ = [
    "MODELS",
    "SOURCE_FORMS",
    "ModelSpec",
    "arch_of",
    "build_model",
    "load_tokenizer_for",
    "load_weights",
    "register_model",
    "save_model",
]
