"""What the model-source tests share: a user's DistilBERT classifier saved by transformers, its
tokenizer and a few texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.helpers import tiny_models


@pytest.fixture
def distilbert_dir(tmp_path: Path) -> Path:
    """A DistilBERT classifier for 3 classes, saved as a user's fine-tuned model would be."""
    folder = tmp_path / "distilbert-clf"
    tiny_models().tiny_hf("distilbert").model.save_pretrained(folder)
    return folder


WORDS = [f"w{i}" for i in range(60)]


@pytest.fixture
def texts(distilbert_dir: Path, tmp_path: Path) -> Path:
    """A word-level tokenizer saved beside the model, and 60 texts of its words in a CSV."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]"
    ).save_pretrained(distilbert_dir)
    rng = np.random.default_rng(0)
    rows = [" ".join(rng.choice(WORDS, 8)) for _ in range(60)]
    table = tmp_path / "texts.csv"
    table.write_text("text,label\n" + "\n".join(f"{t},{i % 3}" for i, t in enumerate(rows)))
    return table
