"""Vocabulary trimming: only the tokens the data uses keep an embedding row; the rest read [UNK]."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slimkit.data.bundle import ArrayDataset
from slimkit.errors import StepError
from slimkit.export import export_onnx
from slimkit.models import ModelSpec, build_model, save_model
from slimkit.models.embedding import RemappedEmbedding
from slimkit.pruning import VocabConfig, prune

ARCH = {"source": "tiny_models:tiny_bert", "kwargs": {"num_classes": 3}}
UNK = 1


@pytest.fixture
def bert_and_batches(fixtures_on_path: Path):
    torch.manual_seed(0)
    net = build_model(ModelSpec.parse("tiny_models:tiny_bert")).eval()
    ids = torch.randint(10, 30, (40, 12))  # the "training data" uses ids 10..29 only
    ids[:, 0] = 2  # a [CLS]-like id in every sequence
    mask = torch.ones_like(ids)
    mask[:, -2:] = 0  # padded positions are not counted
    ids[:, -2:] = 0
    data = ArrayDataset((ids, mask), torch.zeros(40, dtype=torch.long))
    return net, data


def test_seen_tokens_keep_their_rows_and_unseen_ones_read_unk(bert_and_batches):
    net, data = bert_and_batches
    trimmed = prune(net, VocabConfig(unk_token=UNK), batches=data.batches(8))
    table = trimmed.encoder.embeddings.word_embeddings
    assert isinstance(table, RemappedEmbedding)
    assert table.embedding.num_embeddings == 20 + 1 + 1 + 1  # ids 10..29, [CLS]-like 2, UNK, pad 0
    original = net.encoder.embeddings.word_embeddings.weight
    for token in (2, 10, 29):
        assert torch.equal(table(torch.tensor([token]))[0], original[token])
    for unseen in (3, 35, 49):
        assert torch.equal(table(torch.tensor([unseen]))[0], original[UNK])
    seen = torch.randint(10, 30, (2, 12))
    with torch.no_grad():
        assert torch.allclose(
            net(seen, torch.ones_like(seen)), trimmed(seen, torch.ones_like(seen))
        )


def test_min_count_drops_rare_tokens(bert_and_batches):
    net, data = bert_and_batches
    counts = torch.bincount(data.inputs[0][data.inputs[1].bool()], minlength=50)
    trimmed = prune(net, VocabConfig(unk_token=UNK, min_count=30), batches=data.batches(8))
    expected = int((counts >= 30).sum()) + 2  # plus UNK and the padding row
    assert trimmed.encoder.embeddings.word_embeddings.embedding.num_embeddings == expected


@pytest.mark.slow
def test_trimmed_model_saves_reloads_without_pickle_and_exports(bert_and_batches, tmp_path: Path):
    net, data = bert_and_batches
    trimmed = prune(net, VocabConfig(unk_token=UNK), batches=data.batches(8))
    full = save_model(net, tmp_path / "full.safetensors", ARCH).stat().st_size
    path = save_model(trimmed, tmp_path / "trimmed.safetensors", ARCH)
    assert path.stat().st_size < full
    ids = torch.randint(0, 50, (2, 12))
    inputs = (ids, torch.ones_like(ids))
    with torch.no_grad():
        want = trimmed(*inputs)
    script = (
        "import sys, torch; sys.path.insert(0, sys.argv[2]);"
        "from slimkit.models import build_model, ModelSpec;"
        "m = build_model(ModelSpec.parse(sys.argv[1]));"
        "ids = torch.load(sys.argv[3], weights_only=True);"
        "torch.save(m(ids, torch.ones_like(ids)).detach(), sys.argv[4])"
    )
    torch.save(ids, tmp_path / "ids.pt")
    fixtures = str(Path(__file__).parents[1] / "fixtures")
    subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(path),
            fixtures,
            str(tmp_path / "ids.pt"),
            str(tmp_path / "out.pt"),
        ],
        check=True,
    )
    assert torch.equal(torch.load(tmp_path / "out.pt", weights_only=True), want)
    export_onnx(trimmed, inputs, ("input_ids", "attention_mask"), tmp_path / "t.onnx")


def test_bad_vocab_inputs_are_refused(bert_and_batches, fixtures_on_path: Path):
    net, data = bert_and_batches
    with pytest.raises(StepError, match=r"vocab pruning needs tokenizer .* pass tokenizer=\.\.\."):
        prune(net, VocabConfig(), batches=data.batches(8))
    with pytest.raises(StepError, match="tokenizer has no unk_token_id; set unk_token"):
        prune(net, VocabConfig(), batches=data.batches(8), tokenizer=object())
    with pytest.raises(StepError, match="outside the vocabulary of 50"):
        prune(net, VocabConfig(unk_token=500), batches=data.batches(8))
    with pytest.raises(StepError, match=r"vocab pruning needs batches .* pass batches=\.\.\."):
        prune(net, VocabConfig(unk_token=UNK))
    cnn = build_model(ModelSpec.parse("tiny_models:tiny_cnn"))
    with pytest.raises(StepError, match="token embedding table"):
        prune(cnn, VocabConfig(unk_token=UNK), batches=data.batches(8))


def _tiny_hf_dir(root: Path) -> Path:
    """A Hugging Face directory: a 2-layer BERT with its own 40-word WordPiece vocabulary."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]
    folder = root / "tiny-bert"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def test_the_prune_step_reads_unk_from_the_tokenizer_and_reports_unk_share(tmp_path: Path):
    import slimkit

    model = _tiny_hf_dir(tmp_path)
    rows = ["text,label"] + [f"w{i % 20} w{(i + 1) % 20} w{i % 3},{i % 2}" for i in range(120)]
    rows += ["w30 w31 w1,0", "w32 w2,1"]  # words of the test/validation rows only, some of them
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    recipe = {
        "model": f"hf:{model}",
        "data": {"source": f"csv:{tmp_path / 'd.csv'}", "max_length": 8},
        "evaluation": {"rounds": 2, "per_round": 2, "warmup": 1},
        "steps": [{"prune": {"method": "vocab"}}],
    }
    result = slimkit.run(slimkit.Recipe.from_dict(recipe), out=tmp_path / "run")
    prune_step = result.results["steps"][1]
    assert prune_step["params"] < result.results["steps"][0]["params"]
    assert prune_step["notes"][0].startswith("vocabulary trimmed to ")
    assert "of 40 tokens" in prune_step["notes"][0] and "now read [UNK]" in prune_step["notes"][0]
