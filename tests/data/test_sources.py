"""Data sources: built-ins, user files, splits, and the errors bad files get."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.helpers import blobs

from slimkit.data import DataSpec, load_data
from slimkit.errors import DataLoadError


def test_mnist5k_is_real_split_stratified_and_fixed():
    a, b = load_data("mnist5k"), load_data("mnist5k")
    assert (len(a.train), len(a.val), len(a.test)) == (3500, 500, 1000)
    assert a.num_classes == 10 and a.in_channels == 1 and a.input_names == ("pixels",)
    assert np.bincount(a.test.labels.numpy()).tolist() == [100] * 10
    assert torch.equal(a.test.inputs[0], b.test.inputs[0])
    # normalised with the standard MNIST constants: background pixels map to -mean/std
    assert a.train.inputs[0].min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    # no example sits in two splits
    seen = {t.numpy().tobytes() for t in a.test.inputs[0][:200]}
    assert not seen & {t.numpy().tobytes() for t in a.train.inputs[0]}


def test_other_seed_gives_another_split():
    a = load_data("mnist5k")
    b = load_data(DataSpec(source="mnist5k", seed=1))
    assert not torch.equal(a.test.labels, b.test.labels)


def test_calibration_subset_comes_from_train_and_is_seeded():
    bundle = load_data("mnist5k")
    cal = bundle.calibration(64, seed=3)
    assert len(cal) == 64
    train = {t.numpy().tobytes() for t in bundle.train.inputs[0][:]}
    assert all(t.numpy().tobytes() in train for t in cal.inputs[0][:])
    assert torch.equal(cal.labels, bundle.calibration(64, seed=3).labels)


def test_npz_xy_split_by_fractions(blobs_npz: Path):
    bundle = load_data({"source": f"npz:{blobs_npz}", "val_fraction": 0.1, "test_fraction": 0.3})
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 300
    assert abs(len(bundle.test) - 90) <= 3 and bundle.num_classes == 3
    assert bundle.train.inputs[0].shape[1:] == (1, 8, 8)
    assert load_data(str(blobs_npz)).num_classes == 3  # the .npz suffix alone works too


def test_npz_with_its_own_test_split(tmp_path: Path):
    x, y = blobs(200)
    xt, yt = blobs(50, seed=1)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    bundle = load_data(str(tmp_path / "d.npz"))
    assert len(bundle.test) == 50 and len(bundle.train) + len(bundle.val) == 200
    assert torch.equal(bundle.test.labels, torch.from_numpy(yt))


def test_uint8_images_are_scaled_and_get_a_channel(tmp_path: Path):
    x = np.full((30, 8, 8), 255, dtype=np.uint8)
    np.savez(tmp_path / "u8.npz", x=x, y=np.arange(30) % 3)
    bundle = load_data(str(tmp_path / "u8.npz"))
    assert bundle.train.inputs[0].shape[1:] == (1, 8, 8)
    assert bundle.train.inputs[0][:].max().item() == 1.0


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((10, 4)), "y": np.zeros(9)}, "10 inputs but 9 labels"),
        ({"x": np.full((10, 4), np.nan), "y": np.arange(10) % 2}, "NaN or Inf"),
        ({"x": np.full((10, 4), np.inf), "y": np.arange(10) % 2}, "NaN or Inf"),
        ({"x": np.zeros((10, 4)), "y": np.arange(10) - 5}, "labels must be >= 0, found -5"),
        ({"x": np.zeros((10, 4)), "y": np.arange(10) * 0.5}, "whole class indices"),
        ({"x": np.zeros((10, 4)), "y": np.zeros(10)}, "at least 2 classes"),
        ({"x": np.zeros((0, 4)), "y": np.zeros(0)}, "the data set is empty"),
        ({"x": np.array(["a"] * 10), "y": np.arange(10) % 2}, "inputs must be numeric"),
        ({"features": np.zeros((10, 4))}, r"expected 'x' and 'y'"),
        ({"x": np.zeros((4, 4)), "y": np.arange(4) % 2}, "split is empty"),
    ],
)
def test_bad_npz_files_are_named(tmp_path: Path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataLoadError, match=message):
        load_data(str(path))


def test_corrupt_and_missing_files(tmp_path: Path):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataLoadError, match=r"not a readable \.npz file"):
        load_data(str(tmp_path / "junk.npz"))
    with pytest.raises(DataLoadError, match="does not exist"):
        load_data("npz:nowhere.npz")
    with pytest.raises(DataLoadError, match=r"Unknown data set 'mnist'.*Did you mean 'mnist5k'"):
        load_data("mnist")


def test_image_folder(tmp_path: Path):
    for c, colour in enumerate((0, 128, 255)):
        (tmp_path / "imgs" / f"class{c}").mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (10, 12), (colour, i, 0)).save(
                tmp_path / "imgs" / f"class{c}" / f"{i}.png"
            )
    bundle = load_data(f"imagefolder:{tmp_path / 'imgs'}")
    assert bundle.class_names == ("class0", "class1", "class2")
    assert bundle.train.inputs[0].shape[1:] == (3, 12, 10) and bundle.in_channels == 3
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 18


def test_image_folder_rejects_non_images(tmp_path: Path):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "x.png").write_text("not an image")
    with pytest.raises(DataLoadError, match="not a readable image"):
        load_data(f"imagefolder:{tmp_path / 'imgs'}")


class _Tokenizer:
    """Stands in for a Hugging Face tokenizer: one id per word, padded to max_length."""

    def __call__(self, texts, truncation, max_length, padding, return_tensors):
        ids = torch.zeros(len(texts), max_length, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, t in enumerate(texts):
            words = [len(w) for w in t.split()][:max_length]
            ids[i, : len(words)] = torch.tensor(words)
            mask[i, : len(words)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def test_csv_and_jsonl_text(tmp_path: Path):
    rows = [
        {
            "text": f"story number {i} about {'sport' if i % 2 else 'money'}",
            "topic": "sport" if i % 2 else "business",
        }
        for i in range(40)
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "d.csv").write_text(
        "text,topic\n" + "\n".join(f"{r['text']},{r['topic']}" for r in rows)
    )
    for source in ("d.jsonl", "csv:d.csv"):
        bundle = load_data(
            {
                "source": str(tmp_path / source.split(":")[-1])
                if "csv:" not in source
                else f"csv:{tmp_path / 'd.csv'}",
                "label_column": "topic",
                "max_length": 16,
            },
            _Tokenizer(),
        )
        assert bundle.class_names == ("business", "sport")
        assert bundle.input_names == ("input_ids", "attention_mask")
        assert bundle.train.inputs[0].shape[1] == 16


def test_text_errors(tmp_path: Path):
    (tmp_path / "d.csv").write_text("body,label\nhello,1\n")
    with pytest.raises(
        DataLoadError, match=r"no column 'text'; its columns are \['body', 'label'\]"
    ):
        load_data(str(tmp_path / "d.csv"), _Tokenizer())
    (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataLoadError, match="not UTF-8"):
        load_data(str(tmp_path / "latin.csv"), _Tokenizer())
    (tmp_path / "broken.jsonl").write_text('{"text": "a", "label": 1}\n{"text": \n')
    with pytest.raises(DataLoadError, match="line 2 is not valid JSON"):
        load_data(str(tmp_path / "broken.jsonl"), _Tokenizer())
    (tmp_path / "ok.csv").write_text("text,label\na,0\nb,1\n")
    with pytest.raises(DataLoadError, match="needs a text model"):
        load_data(str(tmp_path / "ok.csv"))


@pytest.mark.slow
def test_bbc_news_is_tokenised_for_minilm():
    from slimkit.models import ModelSpec, load_tokenizer_for

    bundle = load_data("bbc-news", load_tokenizer_for(ModelSpec.parse("minilm-l6")))
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 2225
    assert bundle.class_names == ("business", "entertainment", "politics", "sports", "tech")
    assert bundle.train.inputs[0].shape[1] == 128
    assert int(bundle.train.inputs[0][0, 0]) == 101  # [CLS]
