"""Datasets by name, from real offline sources. A missing dataset raises ``DatasetUnavailable`` with
instructions; nothing downloads silently (``fedsim data get`` fetches on request) and nothing falls back to another
dataset. ``open_dataset``: the memory-mapped copy every federation process reads its rows from (``store``)."""

from fedsim.core.data.core import DATASETS, ImageDataset, RawDataset
from fedsim.core.data.sources import load_dataset
from fedsim.core.data import folder as _folder  # noqa: F401,E402  (registers 'folder')
from fedsim.core.data.victims import VICTIM_SETS, load_victims
from fedsim.core.data.store import StoredDataset, open_dataset
from fedsim.core.errors import DatasetUnavailable

__all__ = ["DATASETS", "DatasetUnavailable", "ImageDataset", "RawDataset", "StoredDataset", "load_dataset",
           "open_dataset", "VICTIM_SETS", "load_victims"]
