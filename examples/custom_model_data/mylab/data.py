"""Your data: a loader ``loader(data_dir=..., **data.options) -> fedsim.core.data.ImageDataset`` (images in [0, 1],
shape [N, C, H, W]; int64 labels; a train and a test split; per-channel mean / std)."""

import torch
from sklearn.datasets import load_digits

from fedsim.core.data import ImageDataset


def digits(data_dir=None, test_fraction=0.2, seed=0):
    """scikit-learn's 8 x 8 handwritten digits (1797 images, 10 classes; shipped with scikit-learn, offline)."""
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8] in [0, 1]
    y = torch.tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    cut = int(len(y) * (1 - test_fraction))
    mean, std = float(x[:cut].mean()), float(x[:cut].std())
    return ImageDataset("digits", x[:cut], y[:cut], x[cut:], y[cut:], 10, (mean,), (std,))
