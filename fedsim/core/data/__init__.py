"""Datasets by name, from real offline sources. A missing dataset raises ``DatasetUnavailable`` with
instructions; nothing downloads silently and nothing falls back to another dataset."""

from fedsim.core.data.core import DATASETS, ImageDataset
from fedsim.core.data.sources import load_dataset
from fedsim.core.data import folder as _folder  # noqa: F401,E402  (registers 'folder')
from fedsim.core.data.victims import VICTIM_SETS, load_victims
from fedsim.core.errors import DatasetUnavailable

__all__ = ["DATASETS", "DatasetUnavailable", "ImageDataset", "load_dataset", "VICTIM_SETS", "load_victims"]
