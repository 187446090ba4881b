"""Data sets and the bundle of splits every step reads from.

An item is ``(inputs, label)`` where ``inputs`` is a tuple of tensors: ``(pixels,)`` for
vision, ``(input_ids, attention_mask)`` for text. The tuple's names (``input_names``) become the
ONNX graph's input names, so the same batch feeds PyTorch and ONNX Runtime. A column is a
tensor in memory or :class:`~slimkit.data.arrays.DiskRows` read from disk batch by batch; both
index the same way and give tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from slimkit.data.arrays import DiskRows
from slimkit.errors import DataLoadError

Inputs = tuple[torch.Tensor, ...]
Batch = tuple[Inputs, torch.Tensor]
Column = torch.Tensor | DiskRows


class ArrayDataset(Dataset[Batch]):
    """Aligned input columns and integer labels, indexed together."""

    def __init__(self, inputs: tuple[Column, ...], labels: torch.Tensor) -> None:
        if any(len(x) != len(labels) for x in inputs):
            raise DataLoadError(
                f"Inputs and labels differ in length: {[len(x) for x in inputs]} vs {len(labels)}."
            )
        self.inputs = inputs
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Batch:
        return tuple(x[i] for x in self.inputs), self.labels[i]

    def subset(self, index: torch.Tensor) -> ArrayDataset:
        """The examples at ``index``; columns on disk stay there (only the index is kept)."""
        columns = tuple(
            x.subset(index) if isinstance(x, DiskRows) else x[index] for x in self.inputs
        )
        return ArrayDataset(columns, self.labels[index])

    def batches(self, batch_size: int) -> Iterator[Batch]:
        """Consecutive batches without a DataLoader: cheap for evaluation and calibration."""
        for start in range(0, len(self), batch_size):
            end = start + batch_size
            yield tuple(x[start:end] for x in self.inputs), self.labels[start:end]


@dataclass(frozen=True)
class SplitRows:
    """Which rows of the source each split holds, so a client can score the rows slimkit did.

    ``test_given``: the source brought its own test set, and ``test`` indexes its rows.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    test_given: bool = False


@dataclass(frozen=True)
class DataBundle:
    """Train, validation and test splits of one source, with what a model needs to know."""

    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    num_classes: int
    input_names: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    rows: SplitRows | None = None  # None for a bundle not read from a source (a test's subset)

    def loader(
        self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0
    ) -> DataLoader:
        dataset = {"train": self.train, "val": self.val, "test": self.test}[split]
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)

    def calibration(self, num_samples: int, seed: int = 0) -> ArrayDataset:
        """A seeded random subset of the training split, for quantization calibration."""
        n = min(num_samples, len(self.train))
        index = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed))[:n]
        return self.train.subset(index)

    def sample_inputs(self, batch_size: int = 1) -> Inputs:
        """The first ``batch_size`` test inputs (cycled if the split is smaller).

        Example inputs for export, MAC counting and timing: real data, so data-dependent
        kernels (sparse, early-exit) are timed on what they will see.
        """
        index = torch.arange(batch_size) % len(self.test)
        return tuple(x[index] for x in self.test.inputs)

    def held_out_inputs(self, batch_size: int = 16) -> Inputs:
        """Inputs for verifying an export: validation examples, never the traced test ones.

        Without a validation split, the last test examples (``sample_inputs`` takes the first).
        """
        split = self.val if len(self.val) else self.test
        index = (len(split) - 1 - torch.arange(batch_size)) % len(split)
        return tuple(x[index] for x in split.inputs)

    @property
    def in_channels(self) -> int | None:
        """Channel count of image inputs (N, C, H, W), else None."""
        first = self.train.inputs[0]
        return int(first.shape[1]) if first.dim() == 4 else None

    @property
    def image_size(self) -> tuple[int, int] | None:
        """Height and width of image inputs (N, C, H, W), else None."""
        first = self.train.inputs[0]
        return (int(first.shape[2]), int(first.shape[3])) if first.dim() == 4 else None


def split_indices(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified split: every class keeps its share in each part.

    A fraction of 0 yields an empty part (used when the source brings its own test set).
    """
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(len(idx) * test_fraction)
        n_val = round(len(idx) * val_fraction)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_val])
        parts[0].append(idx[n_test + n_val :])
    train, val, test = (rng.permutation(np.concatenate(p)) for p in parts)
    wanted = (
        ("train", train, 1.0),
        ("validation", val, val_fraction),
        ("test", test, test_fraction),
    )
    for name, part, fraction in wanted:
        if len(part) == 0 and fraction > 0:
            raise DataLoadError(
                f"The {name} split is empty ({len(labels)} examples, val_fraction={val_fraction}, "
                f"test_fraction={test_fraction}). Use more data or larger fractions."
            )
    return train, val, test
