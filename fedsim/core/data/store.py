"""Datasets stored once per machine as memory-mapped ``.npy`` arrays; a process reads only the rows it uses.

Every process of a federation (each ClientApp actor, the ServerApp, each attack worker) used to load the whole
dataset as float32 tensors (CIFAR-10: ~0.6 GB per process). Here the first process that opens a dataset writes
its pixels once to a cache folder, and every process maps that file: a ClientApp reads its partition's rows, the
server and the attack workers the test split (the public half of it for attacks); nothing else is read.

**Why ``.npy`` and not Arrow.** The data are fixed-shape numeric arrays (``N x C x H x W`` pixels, ``N`` labels).
``.npy`` is numpy's own format: ``np.load(mmap_mode="r")`` gives an ``np.memmap`` whose row indexing reads just
those rows, pixels stay uint8 on disk (a quarter of float32), and it needs no new dependency. Arrow's strengths
(mixed and variable-length columns, zero-copy exchange between languages) buy nothing for a pixel block, and
pyarrow (~100 MB) is not a fedsim dependency.

**Layout.** ``<cache>/<dataset>-<key>/{train_x,train_y,test_x,test_y}.npy`` and ``meta.json`` (name, classes,
mean, std, divisor, format). ``<cache>``: ``$FEDSIM_DATA_CACHE``, else ``$XDG_CACHE_HOME/fedsim/datasets``, else
``~/.cache/fedsim/datasets``. ``<key>``: sha256 of the format version, the dataset name, ``data_dir`` (resolved),
``image_size``, ``data.options`` and a cheap fingerprint of the source (names, file sizes and mtimes of the
entries of ``data_dir`` two levels down, hidden ones and the cache itself left out; a user loader's module file):
files added, removed or renamed there make a new folder. A change deeper down that leaves those unchanged (an
image edited in place in ``folder``'s ``train/<class>/``) is not seen: delete the cache folder.

**Pixels.** Sources with integer pixels (``sources``: every registered dataset) store their uint8 arrays as they
are (``RawDataset``); any other ``ImageDataset`` (``folder``, a user's loader, ``data.image_size`` resizing) is
stored as uint8 when every value is exactly ``k / 255`` (checked bit for bit), else as float32. Reading converts
the rows asked for: ``float32(pixel) / float32(divisor)``, the same bits as the loaders' float images
(``core.to_float``). Normalisation is applied per batch by the caller, with the dataset's mean and std.

**Concurrency.** The writer holds an exclusive ``flock`` on ``<folder>.lock`` (so 20 actors starting together
build it once), writes into a temporary sibling folder and publishes it with one ``os.rename``: a reader sees a
complete folder or none, also where ``flock`` does not work (the rename alone keeps it safe; it then only
duplicates work). An existing folder is opened, never rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from fedsim.core.data.core import RAW, ImageDataset, Normalised, RawDataset, to_float

FORMAT = "fedsim-npy-1"
CACHE_ENV = "FEDSIM_DATA_CACHE"
SPLITS = ("train_x", "train_y", "test_x", "test_y")


def cache_root() -> Path:
    """``$FEDSIM_DATA_CACHE``, else the user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``) + fedsim/datasets."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "fedsim" / "datasets"


class Rows:
    """Float32 images of a memory-mapped pixel array, converted on read: ``rows[idx]`` reads only the rows
    ``idx`` selects (a list or array of indices, a slice, a tensor); ``array`` is the ``np.memmap`` itself."""

    def __init__(self, array: np.ndarray, divisor: float):
        self.array, self.divisor = array, divisor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, idx: Any) -> torch.Tensor:
        if isinstance(idx, torch.Tensor):
            idx = idx.cpu().numpy()
        return to_float(self.array[idx], self.divisor)

    def clone(self) -> torch.Tensor:
        """Every row as one float32 tensor (a copy, as ``Tensor.clone``)."""
        return self[:]

    def __repr__(self) -> str:
        return f"Rows({self.shape}, {self.array.dtype} / {self.divisor:g}, memory-mapped)"


@dataclass(frozen=True)
class StoredDataset(Normalised):
    """A dataset in the store: what an ``ImageDataset`` offers, read on demand. ``train_x`` / ``test_x`` are
    :class:`Rows` (index them for float32 images of just those rows), ``train_y`` / ``test_y`` int64 tensors."""

    name: str
    folder: Path
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    divisor: float

    def _map(self, split: str) -> np.ndarray:
        return np.load(self.folder / f"{split}.npy", mmap_mode="r")

    @cached_property
    def train_x(self) -> Rows:
        return Rows(self._map("train_x"), self.divisor)

    @cached_property
    def test_x(self) -> Rows:
        return Rows(self._map("test_x"), self.divisor)

    @cached_property
    def train_y(self) -> torch.Tensor:
        return torch.from_numpy(np.array(self._map("train_y"), dtype=np.int64))

    @cached_property
    def test_y(self) -> torch.Tensor:
        return torch.from_numpy(np.array(self._map("test_y"), dtype=np.int64))


def dataset_key(name: str, data_dir: Path | None, image_size: int, options: dict) -> str:
    """The cache folder's name for these settings (see the module docstring)."""
    parts = [FORMAT, name, str(Path(data_dir).resolve()) if data_dir else "", str(int(image_size)),
             json.dumps(options, sort_keys=True, default=str), _fingerprint(name, data_dir)]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:40]
    return f"{safe}-{digest}"


def _fingerprint(name: str, data_dir: Path | None) -> str:
    stats = []
    if data_dir and Path(data_dir).exists():
        root = Path(data_dir)
        entries = _children(root)
        entries += [g for c in entries if c.is_dir() for g in _children(c)]
        for p in entries:  # not the folders' own mtimes at the top: the cache may live under data_dir
            st = p.stat()
            stats.append(f"{p.relative_to(root)}:{st.st_size if p.is_file() else 0}:{st.st_mtime_ns}")
    if ":" in name:  # a user's package.module:loader: its module file
        import importlib.util

        try:
            spec = importlib.util.find_spec(name.split(":")[0])
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and Path(spec.origin).exists():
            st = Path(spec.origin).stat()
            stats.append(f"{spec.origin}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(stats)


def _children(folder: Path) -> list[Path]:
    """Entries of ``folder`` that describe the source: not hidden ones, not the store's own folder."""
    cache = cache_root().resolve()
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.resolve() != cache
                      and cache not in p.resolve().parents)
    except OSError:
        return []


def open_dataset(name: str, data_dir: str | Path | None = None, *, image_size: int = 0,
                 options: dict | None = None) -> StoredDataset:
    """The stored dataset for these settings: opened when its folder exists, else loaded once (``load_dataset``,
    or the source's raw uint8 arrays), written atomically and opened. Loader errors (``DatasetUnavailable`` with
    how to get the files, ``ConfigError``) pass through unchanged."""
    path = Path(data_dir).expanduser() if data_dir else None
    options = dict(options or {})
    folder = cache_root() / dataset_key(name, path, image_size, options)
    if not _complete(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _lock(folder.parent / f"{folder.name}.lock"):
            if not _complete(folder):  # another process may have written it while we waited
                write_folder(folder, _arrays(name, path, image_size, options))
    return _open(folder)


def _complete(folder: Path) -> bool:
    return (folder / "meta.json").is_file()


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: the atomic rename alone keeps readers safe
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _arrays(name: str, path: Path | None, image_size: int, options: dict) -> RawDataset:
    """What to store: the source's raw uint8 arrays where it has them (no float copy at all), else the loaded
    ``ImageDataset`` encoded (uint8 where exact, float32 otherwise)."""
    from fedsim.core.data.folder import resize
    from fedsim.core.data.sources import load_dataset
    from fedsim.core.objref import is_ref

    if is_ref(name) or name not in RAW:
        return encode(load_dataset(name, path, image_size=image_size, options=options))
    raw = RAW[name](path)
    if not image_size or tuple(raw.train_x.shape[-2:]) == (image_size, image_size):
        return raw
    return encode(resize(raw.to_images(), image_size))


def encode(ds: ImageDataset) -> RawDataset:
    """An ``ImageDataset`` as stored arrays: uint8 with divisor 255 when every pixel is exactly ``k / 255.0``
    in float32 (checked bit for bit), else float32 with divisor 1."""
    def exact_uint8(x: torch.Tensor) -> np.ndarray | None:
        a = x.detach().cpu().numpy()
        if a.dtype != np.float32 or a.size == 0 or a.min() < 0 or a.max() > 1:
            return None
        u8 = np.rint(a * np.float32(255)).astype(np.uint8)
        return u8 if np.array_equal(to_float(u8, 255.0).numpy().view(np.int32), a.view(np.int32)) else None

    tr, te = exact_uint8(ds.train_x), exact_uint8(ds.test_x)
    if tr is not None and (te is not None or len(ds.test_x) == 0):
        te = te if te is not None else np.zeros((0, *tr.shape[1:]), dtype=np.uint8)
        xs, divisor = (tr, te), 255.0
    else:
        xs = tuple(np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32) for x in (ds.train_x, ds.test_x))
        divisor = 1.0
    return RawDataset(ds.name, xs[0], ds.train_y.cpu().numpy().astype(np.int64), xs[1],
                      ds.test_y.cpu().numpy().astype(np.int64), ds.num_classes, tuple(ds.mean), tuple(ds.std),
                      divisor=divisor)


def write_folder(folder: Path, raw: RawDataset) -> None:
    """Write ``raw`` into a temporary sibling of ``folder`` and publish it with one ``os.rename``; when another
    process published ``folder`` first, keep theirs and drop ours."""
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        for split in SPLITS:
            arr = np.ascontiguousarray(getattr(raw, split))
            with open(tmp / f"{split}.npy", "wb") as fh:
                np.save(fh, arr)
                fh.flush()
                os.fsync(fh.fileno())
        meta = {"format": FORMAT, "name": raw.name, "num_classes": int(raw.num_classes),
                "mean": [float(v) for v in raw.mean], "std": [float(v) for v in raw.std],
                "divisor": float(raw.divisor), "pixels": str(raw.train_x.dtype),
                "train": len(raw.train_y), "test": len(raw.test_y)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, folder)
        except OSError:
            if not _complete(folder):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _open(folder: Path) -> StoredDataset:
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format") != FORMAT:  # pragma: no cover - the key holds FORMAT, so only a hand-made folder
        raise ValueError(f"{folder}: format {meta.get('format')!r}, expected {FORMAT!r}; delete the folder")
    return StoredDataset(meta["name"], folder, int(meta["num_classes"]), tuple(meta["mean"]), tuple(meta["std"]),
                         float(meta["divisor"]))
