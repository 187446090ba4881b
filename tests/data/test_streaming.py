"""Data from disk stays on disk: evaluating a set larger than the memory budget reads batches."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from slimkit.data import load_data
from slimkit.evaluation.metrics import predict

STATUS = Path("/proc/self/status")
ROWS, SHAPE = 64_000, (1, 32, 32)  # 262 MB of float32


def _anon_bytes() -> int:
    """Anonymous resident memory of this process: heap and tensors, not mapped file pages."""
    for line in STATUS.read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


def _write_large_npz(path: Path) -> int:
    """Write ``x`` (ROWS x SHAPE float32) and ``y`` chunk by chunk, as np.savez lays them out."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as f:
            header = {"descr": "<f4", "fortran_order": False, "shape": (ROWS, *SHAPE)}
            np.lib.format.write_array_header_2_0(f, header)
            for _ in range(0, ROWS, 4_000):
                f.write(rng.standard_normal((4_000, *SHAPE), dtype=np.float32).tobytes())
        with archive.open("y.npy", "w") as f:
            np.lib.format.write_array(f, rng.integers(0, 3, ROWS))
    return path.stat().st_size


@pytest.mark.skipif(not STATUS.exists(), reason="reads anonymous memory from /proc")
def test_evaluating_a_large_file_holds_batches_not_the_data_set(tmp_path: Path):
    size = _write_large_npz(tmp_path / "large.npz")
    assert size > 250e6
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1024, 3)).eval()
    before = _anon_bytes()

    bundle = load_data(f"npz:{tmp_path / 'large.npz'}")  # scans every value for NaN/Inf
    logits, labels = predict(lambda x: net(*x), bundle.test.batches(256))
    calibration = sum(len(x[0]) for x, _ in bundle.calibration(2_048).batches(256))

    grown = _anon_bytes() - before
    assert len(labels) == 12_800 and logits.shape == (12_800, 3) and calibration == 2_048
    assert grown < 0.25 * size, (
        f"memory grew by {grown / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"
    )


@pytest.mark.skipif(not STATUS.exists(), reason="reads anonymous memory from /proc")
@pytest.mark.slow
def test_a_large_text_table_is_tokenised_to_disk_not_memory(tmp_path: Path):
    from slimkit.models import ModelSpec, load_tokenizer_for

    rows = 100_000
    path = tmp_path / "large.csv"
    with path.open("w", encoding="utf-8") as f:
        f.write("text,label\n")
        for i in range(rows):
            f.write(f"report number {i} on the {'markets' if i % 2 else 'match'} today,{i % 2}\n")
    tokenizer = load_tokenizer_for(ModelSpec.parse("minilm-l6"))
    as_tensors = rows * 128 * 8 * 2  # ids and mask as int64 tensors: 205 MB
    before = _anon_bytes()

    bundle = load_data(f"csv:{path}", tokenizer)
    first = next(bundle.test.batches(4))[0]

    grown = _anon_bytes() - before
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == rows
    assert first[0].dtype == torch.long and int(first[0][0, 0]) == 101  # [CLS]
    assert grown < 0.25 * as_tensors, f"memory grew by {grown / 1e6:.0f} MB"
