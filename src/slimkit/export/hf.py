"""Hand a result back to the Hugging Face ecosystem: a directory that
``AutoModelForSequenceClassification.from_pretrained`` (or the image class) and
``AutoTokenizer.from_pretrained`` load without slimkit, verified to give the same logits.

A transformers config describes one width for every layer, so what it can hold is: fewer
layers (a layer-drop student), FFN pruned by the same share in every layer, and, where the
family's config records a head's width (Llama's ``head_dim``), fewer heads in every layer.
Anything else (heads pruned in a BERT-style family, whose head width is hidden size / heads;
widths that differ between layers; a trimmed vocabulary, which the tokenizer would have to
follow; slimkit's mean-pooled head on a bare encoder) is refused with the reason, and ONNX or
slimkit's safetensors carry it instead.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.errors import ExportError
from slimkit.models.embedding import RemappedEmbedding
from slimkit.models.families import Found, require_family
from slimkit.models.resolution import input_size
from slimkit.models.surgery import weight_rows
from slimkit.models.text import HFClassifier

_ELSEWHERE = "Export it as ONNX (--format onnx) or slimkit's safetensors (--format safetensors)."


def export_hf(
    model: nn.Module,
    out: str | Path,
    check_inputs: tuple[torch.Tensor, ...],
    tokenizer: Any = None,
) -> Path:
    """Write ``model`` as a Hugging Face directory at ``out`` (which must not exist) with its
    ``tokenizer``, after checking that transformers loads it back to the same logits on
    ``check_inputs``."""
    out = Path(out)
    if out.exists():
        raise ExportError(f"{out} already exists; slimkit never overwrites. Choose another --out.")
    if not isinstance(model, HFClassifier):
        raise ExportError(
            f"{type(model).__name__} is not a transformers classification model (a bare "
            f"encoder with slimkit's mean-pooled head is not one either). {_ELSEWHERE}"
        )
    if any(isinstance(m, RemappedEmbedding) for m in model.modules()):
        raise ExportError(
            "Its vocabulary was trimmed: token ids now pass through slimkit's remapping table, "
            f"which neither a transformers config nor its tokenizer describes. {_ELSEWHERE}"
        )
    if input_size(model) is not None:
        raise ExportError(
            "It resizes its images as the first op of its forward (a lower-resolution "
            f"student), which a transformers config does not describe. {_ELSEWHERE}"
        )
    found = require_family(model, "--format hf")
    hf: Any = copy.deepcopy(model.model).eval()  # a transformers PreTrainedModel
    hf.config = _config(found)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        hf.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        _verify(model, staging, check_inputs)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _config(found: Found) -> Any:
    """The model's config with the widths and depth it has now; an error where no config of
    its family can say them."""
    family, attention, config = found.family, found.family.attention, copy.deepcopy(found.config)
    widths = {
        (
            weight_rows(layer.get_submodule(attention.out)).shape[1],
            weight_rows(layer.get_submodule(family.ffn.down)).shape[1],
        )
        for layer in found.layers()
    }
    if len(widths) > 1:
        raise ExportError(
            f"Its layers were pruned to different widths ({sorted(widths)} as (attention, FFN)"
            f"); a transformers config describes one width for every layer. {_ELSEWHERE}"
        )
    ((attention_width, ffn_width),) = widths
    setattr(config, family.ffn_config, ffn_width)
    if not family.shared:
        config.num_hidden_layers = len(found.layers())
    module = found.layers()[0].get_submodule(attention.module)
    head_size = int(getattr(module, attention.head_size))
    if attention_width != config.num_attention_heads * head_size:
        if family.head_config is None:
            raise ExportError(
                f"Its attention heads were pruned, and {family.name} configs derive a head's "
                "width from hidden size / heads, so none describes fewer heads of the same "
                f"width. {_ELSEWHERE}"
            )
        config.num_attention_heads = attention_width // head_size
        if attention.kv_heads:
            key = found.layers()[0].get_submodule(f"{attention.module}.{attention.k}")
            setattr(config, attention.kv_heads, weight_rows(key).shape[0] // head_size)
    return config


def _verify(model: HFClassifier, folder: Path, inputs: tuple[torch.Tensor, ...]) -> None:
    """Load ``folder`` as transformers does and compare its logits with ``model``'s."""
    import transformers

    auto = getattr(transformers, model.auto_class)
    loaded = auto.from_pretrained(folder, local_files_only=True).eval()
    with torch.inference_mode():
        want = model.eval()(*inputs)
        got = loaded(**dict(zip(model.input_names, inputs, strict=True))).logits
    worst = float((got - want).abs().max())
    if worst > 1e-4 * (1 + float(want.abs().max())):
        raise ExportError(
            f"transformers loads the exported directory to logits {worst:.3g} away from the "
            f"model's; nothing was written. {_ELSEWHERE}"
        )
