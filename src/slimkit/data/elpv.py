"""``elpv``: 2,624 electroluminescence images of solar cells, labelled by defect probability.

The images and labels ship in the PyPI package ``elpv-dataset`` (Deitsch et al., CC BY-NC-SA
4.0: read from the installed package, never copied). Each 300 x 300 grayscale cell has a defect
probability of 0, 1/3, 2/3 or 1 (1,508 / 295 / 106 / 715 cells) and a cell type, mono- or
polycrystalline. Those four levels are the classes; ``binary: true`` makes two, defective
(p >= 0.5) or not. The split keeps every (level, type) group in proportion in every part, so a
rare group (polycrystalline cells at 2/3) is in the test set too.

Images are decoded and resized once (``image_size``, default 224) into an unlinked scratch file
and scaled to [-1, 1] as ``(pixel - 127) / 128``, the input scaling of the TensorFlow Lite
models: fed to a pretrained stem whose RGB kernels are summed, a gray cell is then exactly the
RGB model on that cell.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from slimkit.data.arrays import DiskRows
from slimkit.data.sources import DataSpec, Examples, register_dataset
from slimkit.errors import DataLoadError

DEFAULT_SIZE = 224
LEVELS = ("0", "1/3", "2/3", "1")


def _package_data() -> Path:
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or spec.submodule_search_locations is None:
        raise DataLoadError("elpv needs the package elpv-dataset: pip install elpv-dataset.")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def read_labels(folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Image files, defect levels (0-3) and cell types (0 mono, 1 poly) from ``labels.csv``."""
    files, levels, types = [], [], []
    for line in (folder / "labels.csv").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        name, probability, kind = line.split()
        files.append(folder / name)
        levels.append(round(float(probability) * 3))
        types.append(0 if kind == "mono" else 1)
    return files, np.array(levels), np.array(types)


def _decoded(files: list[Path], size: int) -> np.ndarray:
    """Every image as uint8 ``(n, size, size)``, resized once, in an unlinked scratch file."""
    from PIL import Image

    with tempfile.TemporaryFile(prefix="slimkit-elpv-") as scratch:
        pixels = np.memmap(scratch, dtype=np.uint8, mode="w+", shape=(len(files), size, size))
        for i, f in enumerate(files):
            with Image.open(f) as image:
                gray = image.convert("L")
                pixels[i] = np.asarray(gray.resize((size, size), Image.Resampling.BILINEAR))
        pixels.flush()
        return pixels


@register_dataset("elpv", options=("image_size", "binary"))
def _elpv(spec: DataSpec, tokenizer: Any) -> Examples:
    """2,624 solar-cell EL images (elpv-dataset), 4 defect levels or binary; 1 x 224 x 224."""
    files, levels, types = read_labels(_package_data())
    size = spec.image_size or DEFAULT_SIZE
    pixels = _decoded(files, size)

    def read(rows: np.ndarray) -> np.ndarray:
        return ((pixels[rows] - 127.0) / 128.0).astype(np.float32)

    column = DiskRows(read, np.arange(len(files)), (size, size), np.dtype(np.float32))
    labels = (levels >= 2).astype(np.int64) if spec.binary else levels.astype(np.int64)
    names = ("functional", "defective") if spec.binary else LEVELS
    return Examples((column,), labels, ("pixels",), names, strata=levels * 2 + types)
