"""An embedding over part of a vocabulary, so a trimmed text model keeps its tokenizer."""

from __future__ import annotations

import torch
from torch import nn


class RemappedEmbedding(nn.Module):
    """An embedding over a subset of a vocabulary: ``embedding(remap[ids])``."""

    remap: torch.Tensor  # int32, one entry per tokenizer id: its row in ``embedding``

    def __init__(
        self,
        vocab_size: int,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("remap", torch.zeros(vocab_size, dtype=torch.int32))
        self.embedding = nn.Embedding(num_embeddings, embedding_dim, padding_idx=padding_idx)

    @property
    def weight(self) -> torch.Tensor:  # what Hugging Face code reads off an input embedding
        return self.embedding.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.remap[ids].long())
