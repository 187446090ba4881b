"""Vocabulary trimming: drop the embedding rows of tokens a task never uses.

MiniLM's 30,522 x 384 token table is half of its weights; a topic classifier trained on news
sees a fraction of those tokens. ``trim_vocab`` keeps the rows of the ids the training data
uses (at least ``min_count`` times) and puts a :class:`RemappedEmbedding` in place of the table:
an int32 lookup from the tokenizer's ids to the kept rows, unseen ids landing on ``[UNK]``. The
tokenizer stays as it is, and the model saves and reloads through the layer manifest like any
pruned layer.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from slimkit.data.bundle import Batch, DataBundle
from slimkit.errors import StepError
from slimkit.models.embedding import RemappedEmbedding
from slimkit.models.families import find_family
from slimkit.models.surgery import replace
from slimkit.pruning.configs import VocabConfig
from slimkit.pruning.handlers import PruneInputs, register_pruner


def token_embeddings(model: nn.Module) -> tuple[str, nn.Embedding]:
    """The name and module of the token-id embedding table in ``model``: where its family
    keeps it, else a table named ``word_embeddings`` (a user's own text model)."""
    found = find_family(model)
    if found is not None and found.family.tokens is not None:
        name = found.path(found.family.tokens)
        table = model.get_submodule(name)
        if isinstance(table, nn.Embedding):
            return name, table
    for name, module in model.named_modules():
        if name.endswith("word_embeddings") and isinstance(module, nn.Embedding):
            return name, module
    raise StepError(
        "method: vocab needs a text model with a token embedding table (word_embeddings); "
        "this model has none, or its vocabulary is already trimmed."
    )


def token_counts(batches: Iterable[Batch], vocab_size: int) -> torch.Tensor:
    """How often each token id occurs in ``batches`` (attended positions only)."""
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for inputs, _ in batches:
        ids, mask = inputs[0], inputs[1] if len(inputs) > 1 else None
        used = ids[mask.bool()] if mask is not None else ids.flatten()
        counts += torch.bincount(used.long().flatten(), minlength=vocab_size)[:vocab_size]
    return counts


def trim_vocab(model: nn.Module, config: VocabConfig, batches: Iterable[Batch]) -> nn.Module:
    """Keep the embedding rows of the tokens ``batches`` use; remap the rest to ``[UNK]``."""
    if config.unk_token is None:
        raise StepError(
            "method: vocab maps unseen tokens to [UNK]: give unk_token (the tokenizer's "
            "unk_token_id), or use the prune step, which reads it from the model's tokenizer."
        )
    name, table = token_embeddings(model)
    vocab = table.num_embeddings
    if config.unk_token >= vocab:
        raise StepError(f"unk_token {config.unk_token} is outside the vocabulary of {vocab}.")
    counts = token_counts(batches, vocab)
    keep = (counts >= config.min_count).nonzero().flatten()
    specials = [config.unk_token] + ([table.padding_idx] if table.padding_idx is not None else [])
    keep = torch.unique(torch.cat([keep, torch.tensor(specials)]))
    trimmed = RemappedEmbedding(
        vocab,
        len(keep),
        table.embedding_dim,
        padding_idx=None
        if table.padding_idx is None
        else int((keep == table.padding_idx).nonzero()),
    )
    with torch.no_grad():
        trimmed.embedding.weight.copy_(table.weight[keep])
        position = torch.full(
            (vocab,), int((keep == config.unk_token).nonzero()), dtype=torch.int32
        )
        position[keep] = torch.arange(len(keep), dtype=torch.int32)
        trimmed.remap.copy_(position)
    replace(model, name, trimmed)
    return model


@register_pruner(VocabConfig)
def _vocab(model: nn.Module, config: VocabConfig, given: PruneInputs) -> nn.Module:
    assert given.batches is not None  # declared in VocabConfig.needs, checked by prune
    if config.unk_token is None:
        unk = getattr(given.tokenizer, "unk_token_id", None)
        if unk is None:
            raise StepError(
                "method: vocab maps unseen tokens to [UNK], and this model's tokenizer has no "
                "unk_token_id; set unk_token: ID in the step."
            )
        config = config.model_copy(update={"unk_token": int(unk)})
    vocab = token_embeddings(model)[1].num_embeddings
    trimmed = trim_vocab(model, config, given.batches)
    if given.data is not None:
        given.notes.append(_unk_note(trimmed, vocab, config, given.data))
    return trimmed


def _unk_note(trimmed: nn.Module, vocab: int, config: VocabConfig, data: DataBundle) -> str:
    """How much of the table was kept, and how often held-out text now reads [UNK]."""
    remapped = next(m for m in trimmed.modules() if isinstance(m, RemappedEmbedding))
    assert config.unk_token is not None
    counts = token_counts(data.val.batches(256), vocab)
    remap = remapped.remap.long()
    unseen = (remap == remap[config.unk_token]) & (torch.arange(vocab) != config.unk_token)
    share = float(counts[unseen].sum()) / max(1, int(counts.sum()))
    return (
        f"vocabulary trimmed to {remapped.embedding.num_embeddings:,} of {vocab:,} tokens "
        f"(seen at least {config.min_count}x in training); {share:.2%} of validation tokens "
        "now read [UNK]"
    )
