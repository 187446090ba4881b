"""Splits written for a client that has no slimkit: which rows each split holds, and the test
split itself, as ``.npz`` (numpy, no pickle) or JSON lines.

A run directory records ``split.npz`` (row indices), so anyone can check which rows slimkit
scored; ``slimkit export --format npz|jsonl`` writes the test split's inputs and labels, so a
bare ONNX Runtime session can score exactly those rows.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from slimkit._io import write_bytes
from slimkit.data.bundle import DataBundle
from slimkit.errors import DataLoadError

EXPORT_BATCH = 256


def write_split_rows(bundle: DataBundle, path: Path) -> None:
    """``split.npz``: int64 ``train``, ``val``, ``test`` row indices and ``test_given``."""
    rows = bundle.rows
    if rows is None:
        raise DataLoadError(
            f"Data {bundle.name!r} records no split: it was not read from a source."
        )
    split = {name: getattr(rows, name).astype(np.int64) for name in ("train", "val", "test")}
    write_bytes(path, _npz({**split, "test_given": np.array(rows.test_given)}))


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def scored_arrays(bundle: DataBundle) -> dict[str, np.ndarray]:
    """The test split's input columns by input name, and its labels as ``label``."""
    columns: list[list[np.ndarray]] = [[] for _ in bundle.input_names]
    labels = []
    for inputs, y in bundle.test.batches(EXPORT_BATCH):
        for column, x in zip(columns, inputs, strict=True):
            column.append(x.numpy())
        labels.append(y.numpy())
    arrays = {n: np.concatenate(c) for n, c in zip(bundle.input_names, columns, strict=True)}
    return {**arrays, "label": np.concatenate(labels).astype(np.int64)}


def write_test_split(bundle: DataBundle, path: Path, fmt: str) -> int:
    """Write the test split to ``path`` as ``npz`` or ``jsonl``; return the number of rows.

    Inputs are exactly what the model is fed (pixels as stored, token ids after tokenising),
    under the model's input names; a JSON line also carries its class name when the source has
    them.
    """
    arrays = scored_arrays(bundle)
    if fmt == "npz":
        data = _npz(arrays)
    else:
        names = bundle.class_names
        lines = []
        for i, label in enumerate(arrays["label"].tolist()):
            row = {n: arrays[n][i].tolist() for n in bundle.input_names}
            row["label"] = label
            if names is not None:
                row["class"] = names[label]
            lines.append(json.dumps(row))
        data = ("\n".join(lines) + "\n").encode()
    write_bytes(path, data)
    return len(arrays["label"])
