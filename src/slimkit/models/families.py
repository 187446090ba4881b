"""Transformer families: where each Hugging Face architecture keeps what slimkit prunes.

A :class:`Family` is registered per ``model_type`` (the field of a model's ``config.json``) and
says, relative to the family's base model (``model.base_model``), where the stack of layers,
each layer's attention projections and feed-forward block, and the token table live, and which
attributes carry a head count that must stay true when heads are removed. Pruning, layer-drop
students, vocabulary trimming and the search read a model's structure from here, never from
module names of one family; a family not registered gets an error naming those that are.

Head counts come from the projections' shapes divided by the head size the family's attention
module records, so a model's own config, not a guess, says how wide a head is. Grouped-query
attention (Llama, Mistral) is pruned a key/value group at a time, so every query head keeps
the key/value head it shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from slimkit.errors import StepError
from slimkit.registry import Registry


@dataclass(frozen=True)
class Attention:
    """One layer's attention, by path relative to the layer.

    ``module`` is the attention module; ``q``/``k``/``v`` are relative to it (or ``fused``, one
    projection computing all three side by side, as GPT-2's ``c_attn``); ``out`` is relative to
    the layer. ``head_size`` names the module attribute holding a head's width; ``heads`` the
    attributes holding the head count and ``widths`` those holding heads x head size, which are
    kept true after pruning. ``per_head`` are further projections whose outputs are per head
    (DeBERTa's relative-position projections), sliced with the queries. ``kv_heads`` names the
    config field of a grouped-query family's key/value head count.
    """

    module: str
    out: str
    q: str = ""
    k: str = ""
    v: str = ""
    fused: str = ""
    head_size: str = "attention_head_size"
    heads: tuple[str, ...] = ("num_attention_heads",)
    widths: tuple[str, ...] = ("all_head_size",)
    per_head: tuple[str, ...] = ()
    kv_heads: str = ""


@dataclass(frozen=True)
class Ffn:
    """One layer's feed-forward block: projections whose output rows are its neurons (``up``,
    with the gate of a gated block) and the one whose input columns are (``down``)."""

    up: tuple[str, ...]
    down: str


@dataclass(frozen=True)
class Family:
    """Where a family keeps its layers, attention, FFN and token table (paths below the base
    model); ``shared`` for families whose depth reuses one set of weights (ALBERT).

    ``ffn_config`` names the config field of the FFN width; ``head_config`` the field of a
    head's width where the config has one (Llama's ``head_dim``): only then can a config
    describe fewer heads of the same width, as head pruning leaves them.
    """

    name: str
    layers: str
    attention: Attention
    ffn: Ffn
    tokens: str | None = "embeddings.word_embeddings"
    shared: bool = False
    ffn_config: str = "intermediate_size"
    head_config: str | None = None


FAMILIES: Registry[Family] = Registry("transformer family")


def register_family(*model_types: str) -> Any:
    """Register a :class:`Family` for each ``model_type`` given."""

    def add(family: Family) -> Family:
        for model_type in model_types:
            FAMILIES.add(model_type, family, help=family.name)
        return family

    return add


_BERT_ATTENTION = Attention("attention.self", "attention.output.dense", "query", "key", "value")
_BERT_FFN = Ffn(("intermediate.dense",), "output.dense")

register_family("bert", "roberta", "xlm-roberta", "camembert", "electra")(
    Family("BERT-style encoder", "encoder.layer", _BERT_ATTENTION, _BERT_FFN)
)
register_family("distilbert")(
    Family(
        "DistilBERT",
        "transformer.layer",
        Attention(
            "attention",
            "attention.out_lin",
            "q_lin",
            "k_lin",
            "v_lin",
            heads=("n_heads",),
            widths=(),
        ),
        Ffn(("ffn.lin1",), "ffn.lin2"),
        ffn_config="hidden_dim",
    )
)
register_family("albert")(
    Family(
        "ALBERT (one layer shared across the depth)",
        "encoder.albert_layer_groups.0.albert_layers",
        Attention("attention", "attention.dense", "query", "key", "value"),
        Ffn(("ffn",), "ffn_output"),
        shared=True,
    )
)
register_family("deberta-v2")(
    Family(
        "DeBERTa-v2",
        "encoder.layer",
        Attention(
            "attention.self",
            "attention.output.dense",
            "query_proj",
            "key_proj",
            "value_proj",
            per_head=("pos_query_proj", "pos_key_proj"),
        ),
        _BERT_FFN,
    )
)
register_family("vit")(
    Family(
        "ViT",
        "layers",
        Attention(
            "attention",
            "attention.o_proj",
            "q_proj",
            "k_proj",
            "v_proj",
            head_size="head_dim",
            widths=(),
        ),
        Ffn(("mlp.fc1",), "mlp.fc2"),
        tokens=None,
    )
)
register_family("gpt2")(
    Family(
        "GPT-2",
        "h",
        Attention(
            "attn",
            "attn.c_proj",
            fused="c_attn",
            head_size="head_dim",
            heads=("num_heads",),
            widths=("split_size",),
        ),
        Ffn(("mlp.c_fc",), "mlp.c_proj"),
        tokens="wte",
        ffn_config="n_inner",
    )
)
register_family("llama", "mistral", "qwen2")(
    Family(
        "Llama-style decoder (grouped-query attention, RMSNorm)",
        "layers",
        Attention(
            "self_attn",
            "self_attn.o_proj",
            "q_proj",
            "k_proj",
            "v_proj",
            head_size="head_dim",
            heads=(),
            widths=(),
            kv_heads="num_key_value_heads",
        ),
        Ffn(("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj"),
        tokens="embed_tokens",
        head_config="head_dim",
    )
)


@dataclass(frozen=True)
class Found:
    """A model's family and its base model (where the family's paths start)."""

    family: Family
    base: nn.Module
    base_path: str  # the base model's qualified name inside the whole model
    config: Any  # the Hugging Face config

    def layers(self) -> nn.ModuleList:
        stack = self.base.get_submodule(self.family.layers)
        assert isinstance(stack, nn.ModuleList)
        return stack

    def path(self, inner: str) -> str:
        """The qualified name, in the whole model, of a path below the base model."""
        return _join(self.base_path, inner)


def find_family(model: nn.Module, strict: bool = True) -> Found | None:
    """The registered family of the Hugging Face model inside ``model`` (None: no Hugging Face
    transformer in it); one that is not registered is an error naming those that are (None
    unless ``strict``)."""
    for name, module in model.named_modules():
        config = getattr(module, "config", None)
        model_type = getattr(config, "model_type", None)
        if not isinstance(model_type, str) or not hasattr(module, "base_model"):
            continue
        if model_type not in FAMILIES:
            if not strict:
                return None
            raise StepError(
                f"slimkit does not know the layout of {model_type!r} transformers, so it cannot "
                f"prune or cut them; it knows {', '.join(FAMILIES.list())}. Register one with "
                "slimkit.models.families.register_family, or compress it by quantization."
            )
        base = module.base_model
        base_name = next(n for n, m in module.named_modules() if m is base)
        return Found(FAMILIES.get(model_type), base, _join(name, base_name), config)
    return None


def require_family(model: nn.Module, what: str) -> Found:
    """:func:`find_family`, for a technique that needs one (``what`` names it in the error)."""
    found = find_family(model)
    if found is None:
        raise StepError(
            f"{what} needs a Hugging Face transformer; {type(model).__name__} is not one "
            f"(families: {', '.join(FAMILIES.list())})."
        )
    return found


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)
