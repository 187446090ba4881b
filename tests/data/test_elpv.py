"""elpv: the real solar-cell images from the installed package, four defect levels or two, split
so that every (defect level, cell type) group keeps its share in every part."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import slimkit
from slimkit.data.elpv import read_labels
from slimkit.errors import DataLoadError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("elpv_dataset") is None,
    reason="elpv-dataset is not installed (make venv installs it)",
)


def _folder() -> Path:
    spec = importlib.util.find_spec("elpv_dataset")
    assert spec is not None and spec.submodule_search_locations is not None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def test_the_labels_are_the_papers_four_levels_and_two_cell_types():
    files, levels, types = read_labels(_folder())
    assert len(files) == 2624 and all(f.is_file() for f in files[:5])
    assert np.bincount(levels).tolist() == [1508, 295, 106, 715]
    assert set(types.tolist()) == {0, 1}


@pytest.mark.slow
def test_elpv_splits_every_level_and_cell_type_in_proportion():
    data = slimkit.load_data({"source": "elpv", "image_size": 32})
    assert (len(data.train), len(data.val), len(data.test)) == (1836, 263, 525)
    assert data.num_classes == 4 and data.class_names == ("0", "1/3", "2/3", "1")
    _, levels, types = read_labels(_folder())
    groups = levels * 2 + types
    assert data.rows is not None
    for g in np.unique(groups):
        share = np.isin(data.rows.test, np.flatnonzero(groups == g)).sum() / (groups == g).sum()
        assert share == pytest.approx(0.2, abs=0.02), g
    pixels, labels = next(iter(data.test.batches(16)))
    assert pixels[0].shape == (16, 1, 32, 32)
    assert float(pixels[0].min()) >= -1.0 and float(pixels[0].max()) <= 1.0
    assert labels.tolist() == levels[data.rows.test[:16]].tolist()
    binary = slimkit.load_data({"source": "elpv", "image_size": 32, "binary": True})
    assert binary.class_names == ("functional", "defective")
    assert np.bincount(binary.test.labels.numpy()).tolist() == [
        int(np.isin(levels[binary.rows.test], [0, 1]).sum()),
        int(np.isin(levels[binary.rows.test], [2, 3]).sum()),
    ]


def test_options_of_one_data_set_are_refused_by_the_others(blobs_npz: Path):
    with pytest.raises(DataLoadError, match=r"'mnist5k' does not read the option.*elpv"):
        slimkit.load_data({"source": "mnist5k", "binary": True})
    with pytest.raises(DataLoadError, match="does not read the option"):
        slimkit.load_data({"source": f"npz:{blobs_npz}", "image_size": 64})
