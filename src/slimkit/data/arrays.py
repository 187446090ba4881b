"""Inputs that stay on disk: rows are read, converted and returned only when asked for.

A data set loaded from a user's file can be larger than memory. ``.npz`` members are memory-mapped
(a compressed member is first inflated to an anonymous temporary file, then mapped), image folders
are decoded one file at a time, text tables are tokenised a chunk at a time into mapped scratch
files, and a :class:`DiskRows` holds only the row index of its split. So evaluation, calibration
and training read one batch at a time, and memory stays bounded by the batch, not the data set.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import numpy as np
import torch

from slimkit.errors import DataLoadError

RowReader = Callable[[np.ndarray], np.ndarray]  # sorted-or-not row indices -> stacked rows

_CHUNK = 4096  # rows per read when a whole array must be scanned (finite check)


class DiskRows:
    """Rows ``index`` of an array that lives on disk, as tensors when indexed.

    ``read(rows)`` returns raw rows (any numeric dtype). As float32 inputs (the default), uint8
    rows are scaled to [0, 1] and a ``(H, W)`` row gets a channel axis, so images are always
    ``(C, H, W)``; ``tokens`` rows (ids, masks) come back as int64, as they are.
    """

    def __init__(
        self,
        read: RowReader,
        index: np.ndarray,
        row_shape: tuple[int, ...],
        dtype: np.dtype,
        tokens: bool = False,
    ) -> None:
        self._read = read
        self._index = index
        self._dtype = np.dtype(dtype)
        self._tokens = tokens
        image = len(row_shape) == 2 and not tokens
        self._row_shape = (1, *row_shape) if image else row_shape

    @classmethod
    def of_array(cls, array: np.ndarray, tokens: bool = False) -> DiskRows:
        """Every row of ``array`` (typically memory-mapped)."""
        return cls(
            lambda rows: array[rows], np.arange(len(array)), array.shape[1:], array.dtype, tokens
        )

    def __len__(self) -> int:
        return len(self._index)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self._row_shape))

    def dim(self) -> int:
        return 1 + len(self._row_shape)

    def subset(self, index: torch.Tensor | np.ndarray) -> DiskRows:
        """The rows at ``index`` (positions in this view), still on disk."""
        rows = self._index[np.asarray(index)]
        return DiskRows(self._read, rows, self._row_shape, self._dtype, self._tokens)

    def __getitem__(self, key: int | slice | torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(key, int | np.integer):
            return self._convert(self._read(self._index[[int(key)]]))[0]
        rows = self._index[key] if isinstance(key, slice) else self._index[np.asarray(key)]
        return self._convert(self._read(rows))

    def _convert(self, raw: np.ndarray) -> torch.Tensor:
        if self._tokens:
            return torch.from_numpy(np.ascontiguousarray(raw, dtype=np.int64))
        out = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))
        if self._dtype == np.uint8:
            out = out / 255.0
        return out.reshape(len(raw), *self._row_shape)

    def all_finite(self) -> bool:
        """Whether every value is finite, read in chunks (never the whole array at once)."""
        if self._dtype.kind != "f":
            return True
        for start in range(0, len(self._index), _CHUNK):
            if not np.isfinite(self._read(self._index[start : start + _CHUNK])).all():
                return False
        return True


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array in an ``.npz`` file, memory-mapped rather than read into memory.

    Arrays of Python objects are refused: loading them would unpickle.
    """
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename.removesuffix(".npy")
                if info.compress_type == zipfile.ZIP_STORED:
                    arrays[name] = _map_stored(path, info)
                else:
                    with archive.open(info) as member:
                        arrays[name] = _map_inflated(member)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, struct.error) as err:
        raise DataLoadError(f"{path} is not a readable .npz file: {err}") from None
    return arrays


def _map_stored(path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    with path.open("rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the member's local header: name and extra-field lengths at 26..30
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        return _map_npy(f, path)


def _map_inflated(member: IO[bytes]) -> np.ndarray:
    # An unlinked file: the mapping keeps its pages alive, and they go when it is unmapped.
    with tempfile.TemporaryFile(prefix="slimkit-npz-") as scratch:
        shutil.copyfileobj(member, scratch, length=1 << 20)
        scratch.seek(0)
        return _map_npy(scratch, scratch)


def _map_npy(f: IO[bytes], target: Path | IO[bytes]) -> np.ndarray:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if dtype.hasobject:
        raise ValueError("it holds Python objects, which only unpickling can read; save numbers")
    if 0 in shape:
        return np.empty(shape, dtype)
    return np.memmap(
        target, dtype=dtype, mode="r", offset=f.tell(), shape=shape, order="F" if fortran else "C"
    )


def image_rows(files: list[Path], mode: str) -> RowReader:
    """Read image ``files[i]`` for each requested row, decoded as ``mode`` (``L`` or ``RGB``)."""
    from PIL import Image

    def read(rows: np.ndarray) -> np.ndarray:
        images = []
        for i in rows:
            with Image.open(files[int(i)]) as img:
                pixels = np.asarray(img.convert(mode))
            images.append(pixels.transpose(2, 0, 1) if pixels.ndim == 3 else pixels)
        return np.stack(images)

    return read


def token_columns(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], length: int
) -> tuple[DiskRows, DiskRows]:
    """Token ids and attention masks, chunk by chunk (each ``(rows, length)``), written to
    unlinked scratch files and mapped: a corpus is never held in memory as tensors."""
    with (
        tempfile.TemporaryFile(prefix="slimkit-ids-") as ids,
        tempfile.TemporaryFile(prefix="slimkit-mask-") as mask,
    ):
        rows = 0
        for chunk_ids, chunk_mask in chunks:
            ids.write(np.ascontiguousarray(chunk_ids, dtype=np.int32).tobytes())
            mask.write(np.ascontiguousarray(chunk_mask, dtype=np.int32).tobytes())
            rows += len(chunk_ids)
        if rows == 0:
            raise DataLoadError("no rows to tokenise")
        columns = []
        for f in (ids, mask):
            f.flush()
            mapped = np.memmap(f, dtype=np.int32, mode="r", shape=(rows, length))
            columns.append(DiskRows.of_array(mapped, tokens=True))
    return columns[0], columns[1]
