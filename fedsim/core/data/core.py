"""Dataset registry and the in-memory image dataset record (the loaders and ``load_dataset``: ``sources``); the
sources whose pixels are integers also register their raw uint8 arrays (``RAW``: what ``store`` writes to disk)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


class Normalised:
    """What every dataset form offers beside its arrays (``ImageDataset``, the store's ``StoredDataset``): the
    input shape and the normalisation, from ``train_x`` and ``mean`` / ``std``."""

    train_x: Any
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel space [0, 1] -> model input space."""
        return normalize(x, self.mean, self.std)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Model input space -> pixel space."""
        return denormalize(x, self.mean, self.std)


@dataclass(frozen=True)
class ImageDataset(Normalised):
    """Images as float32 in [0, 1] with shape [N, C, H, W], labels as int64; normalisation constants."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(x - mean) / std`` per channel, on ``x``'s device and in its dtype."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s


def denormalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``x * std + mean`` per channel, on ``x``'s device and in its dtype."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x * s + m


@dataclass(frozen=True)
class RawDataset:
    """A source's integer pixels as stored: uint8 ``[N, C, H, W]`` numpy arrays; image = pixel / ``divisor``
    (float32), exactly the float images the source's ``ImageDataset`` loader returns."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    divisor: float = 255.0

    def to_images(self) -> ImageDataset:
        """The float32 ``ImageDataset`` of these pixels."""
        return ImageDataset(self.name, to_float(self.train_x, self.divisor), torch.from_numpy(self.train_y),
                            to_float(self.test_x, self.divisor), torch.from_numpy(self.test_y), self.num_classes,
                            self.mean, self.std)


def to_float(pixels: np.ndarray, divisor: float) -> torch.Tensor:
    """Stored pixels -> float32 images: ``float32(p) / float32(divisor)`` (IEEE division, so numpy here and the
    loaders' ``x / 255.0`` in numpy or torch give the same bits); float32 pixels (divisor 1) are copied as they are."""
    x = np.array(pixels, dtype=np.float32)  # a copy: never a view of a memory map
    if divisor != 1:
        x /= np.float32(divisor)
    return torch.from_numpy(x)


Loader = Callable[[Path | None], ImageDataset]
DATASETS: dict[str, Loader] = {}
RawLoader = Callable[[Path | None], RawDataset]
RAW: dict[str, RawLoader] = {}


def register_raw(name: str) -> Callable[[RawLoader], RawLoader]:
    """Register ``name``'s raw uint8 loader (the ``ImageDataset`` loader of the same name is its ``to_images``)."""
    def wrap(fn: RawLoader) -> RawLoader:
        @functools.wraps(fn)
        def images(data_dir: Path | None = None) -> ImageDataset:
            return fn(data_dir).to_images()

        RAW[name] = fn
        DATASETS[name] = images
        return fn

    return wrap


def register(name: str) -> Callable[[Loader], Loader]:
    def wrap(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn

    return wrap


def stratified_split(x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deterministic per-class split of a single pool into train and test."""
    gen = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    tr, te = torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values
    return x[tr], y[tr], x[te], y[te]
