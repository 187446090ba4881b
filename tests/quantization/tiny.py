"""A tiny token model with transformer-shaped (3-D) Linear layers, for the Linear-only modes."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


class TokenNet(nn.Module):
    """Embedding → Linear → GELU → Linear (on every token) → mean pool → head."""

    def __init__(self, vocab: int = 50, dim: int = 64, hidden: int = 128, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(input_ids)
        h = h + self.down(torch.nn.functional.gelu(self.up(h)))
        return self.head(h.mean(dim=1))


def token_batches(batch: int, n: int = 4, seq: int = 12) -> Iterator[tuple[torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        yield (torch.randint(0, 50, (batch, seq), generator=g),)
