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

from slimkit._io import atomic_path
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
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        train=rows.train.astype(np.int64),
        val=rows.val.astype(np.int64),
        test=rows.test.astype(np.int64),
        test_given=np.array(rows.test_given),
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


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
        buffer = io.BytesIO()
        np.savez_compressed(buffer, allow_pickle=False, **arrays)
        data = buffer.getvalue()
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
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return len(arrays["label"])
