"""A user's own model factory and data loader, written into a throwaway package outside the project
(``tests/test_byo.py`` puts it under ``tmp_path`` and on ``PYTHONPATH``)."""

from pathlib import Path

PACKAGE = "byo_user_pkg"

MODELS = '''
import math
from torch import nn


def tiny(input_shape, num_classes, hidden=32):
    """A two-layer MLP: the contract is factory(input_shape=(C, H, W), num_classes=K, **model.options)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


def wrong_outputs(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes + 1))


def raises(input_shape, num_classes):
    raise RuntimeError("my factory is broken")
'''

DATA = '''
import torch
from fedsim.core.data import ImageDataset


def blobs(data_dir=None, per_class=40, classes=4, size=8, seed=0):
    """Four classes of 1 x size x size images: a bright square in one quadrant per class, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    n = per_class * classes
    y = torch.arange(n) % classes
    x = 0.1 * torch.rand(n, 1, size, size, generator=gen)
    h = size // 2
    for c in range(classes):
        r, q = divmod(c, 2)
        x[y == c, :, r * h:(r + 1) * h, q * h:(q + 1) * h] += 0.8
    x = x.clamp(0, 1)
    cut = n * 3 // 4
    return ImageDataset("blobs", x[:cut], y[:cut], x[cut:], y[cut:], classes, (0.3,), (0.4,))


def not_a_dataset(data_dir=None):
    return {"x": 1}
'''


def write_package(root: Path) -> Path:
    """``root/byo_user_pkg/{__init__,models,data}.py``; returns ``root`` (the folder to put on the path)."""
    pkg = root / PACKAGE
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(MODELS)
    (pkg / "data.py").write_text(DATA)
    return root
