"""Data sources and the split bundle every step reads from."""

from slimkit.data import elpv  # noqa: F401  (registers the elpv data set)
from slimkit.data.bundle import ArrayDataset, Batch, DataBundle, Inputs
from slimkit.data.sources import DATA_FORMS, DATASETS, DataSpec, load_data, register_dataset

__all__ = [
    "DATASETS",
    "DATA_FORMS",
    "ArrayDataset",
    "Batch",
    "DataBundle",
    "DataSpec",
    "Inputs",
    "load_data",
    "register_dataset",
]
