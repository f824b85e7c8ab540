"""The memory-mapped dataset store (``fedsim.core.data.store``): a client's partition is today's bit for bit, a
client reads only its rows, the cache is written once and published atomically."""

from __future__ import annotations

import hashlib
import os
import threading

import numpy as np
import pytest
import torch

from fedsim.core.config import from_flat
from fedsim.core.data import store


def _clear() -> None:
    from fedsim.core import experiment as E

    E.dataset_for.cache_clear()  # per-process caches (lru) of the store and the partitions
    E._partitions.cache_clear()


@pytest.fixture(scope="module")
def mnist_cache(tmp_path_factory):
    """One store for this module's mnist_subset tests (the CSV is parsed once)."""
    mp = pytest.MonkeyPatch()
    mp.setenv(store.CACHE_ENV, str(tmp_path_factory.mktemp("store")))
    _clear()
    yield
    _clear()
    mp.undo()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty store with a tiny registered source ``tiny`` (random uint8 pixels, 40 + 10 images)."""
    from fedsim.core.data.core import RawDataset

    rng = np.random.default_rng(0)
    raw = RawDataset("tiny", rng.integers(0, 256, (40, 1, 6, 6), dtype=np.uint8), rng.integers(0, 3, 40),
                     rng.integers(0, 256, (10, 1, 6, 6), dtype=np.uint8), rng.integers(0, 3, 10), 3, (0.5,), (0.25,))
    monkeypatch.setitem(store.RAW, "tiny", lambda data_dir=None: raw)
    monkeypatch.setenv(store.CACHE_ENV, str(tmp_path / "cache"))
    _clear()
    yield tmp_path / "cache"
    _clear()


def test_partition_equals_the_old_tensors_bit_for_bit(mnist_cache):
    from fedsim.core.experiment import client_data, client_indices

    cfg = from_flat({"data.dataset": "mnist_subset", "data.partition": "dirichlet", "run.num_clients": 5})
    x, y = client_data(cfg, 2, 5)
    assert x.dtype == torch.float32 and x.shape == (835, 1, 28, 28) and len(client_indices(cfg, 2, 5)) == 835
    # sha256 of the bytes of the tensors that f0fe980's client_data (the whole dataset as float32, before the store)
    # returned for this config: `git archive f0fe980 | tar -x -C OLD`, then the same call with PYTHONPATH=OLD
    assert hashlib.sha256(x.numpy().tobytes()).hexdigest()[:16] == "cc48dd15073cbdf0"
    assert hashlib.sha256(y.numpy().tobytes()).hexdigest()[:16] == "4c1351031999382f"


def test_a_client_reads_only_its_rows_from_a_memory_map(mnist_cache, monkeypatch):
    from fedsim.core import experiment as E

    _clear()  # a fresh process's view of the (already written) store
    cfg = from_flat({"data.dataset": "mnist_subset", "data.partition": "dirichlet", "run.num_clients": 5})
    idx = E.client_indices(cfg, 1, 5)  # partitions from the labels alone: no pixel read yet
    ds = E.dataset(cfg)
    assert "train_x" not in vars(ds) and "test_x" not in vars(ds)
    read: list[np.ndarray] = []
    original = store.Rows.__getitem__
    monkeypatch.setattr(store.Rows, "__getitem__", lambda self, i: read.append(np.asarray(i)) or original(self, i))
    x, y = E.client_data(cfg, 1, 5)
    assert isinstance(ds.train_x.array, np.memmap) and ds.train_x.array.dtype == np.uint8
    assert ds.train_x.array.shape == (4000, 1, 28, 28) and len(x) == len(y) == len(idx) < 4000
    assert len(read) == 1 and np.array_equal(read[0], idx)  # one read: exactly the partition's rows
    assert "test_x" not in vars(ds)  # the test split was never mapped by a client


def test_cache_is_reused_not_rewritten(cache, monkeypatch):
    first = store.open_dataset("tiny")
    files = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in first.folder.iterdir()}
    assert sorted(files) == ["meta.json", "test_x.npy", "test_y.npy", "train_x.npy", "train_y.npy"]
    monkeypatch.setattr(store, "write_folder", lambda *a: pytest.fail("an existing cache folder was rewritten"))
    monkeypatch.setitem(store.RAW, "tiny", lambda *a: pytest.fail("an existing cache folder was reloaded"))
    again = store.open_dataset("tiny")
    assert again.folder == first.folder and again is not first and torch.equal(again.train_x[:], first.train_x[:])
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in again.folder.iterdir()} == files
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [first.folder.name]  # one folder, no temporaries


def test_other_settings_get_their_own_folder(cache):
    a = store.open_dataset("tiny")
    b = store.open_dataset("tiny", image_size=4)
    assert a.folder != b.folder and b.input_shape == (1, 4, 4) and b.train_x.array.dtype == np.float32
    assert a.train_x.array.dtype == np.uint8 and a.divisor == 255.0 and a.input_shape == (1, 6, 6)
    assert torch.equal(a.train_x[[3, 1]], torch.from_numpy(store.RAW["tiny"]().train_x[[3, 1]]).float() / 255)


def test_a_reader_never_sees_a_half_written_folder(cache, monkeypatch):
    """Every file is written into a temporary sibling; the folder appears, complete, with the one rename."""
    folder = cache / store.dataset_key("tiny", None, 0, {})
    seen = []
    save = np.save

    def watching_save(fh, arr):
        seen.append((folder.exists(), store._complete(folder)))
        return save(fh, arr)

    monkeypatch.setattr(store.np, "save", watching_save)
    ds = store.open_dataset("tiny")
    assert ds.folder == folder and seen == [(False, False)] * 4 and store._complete(folder)


def test_concurrent_writers_publish_one_complete_folder(cache, monkeypatch):
    """Four openers race on a cold cache: the lock lets one load and write; without the lock (a file system where
    flock does nothing) each writes its own temporary and the rename publishes exactly one, the others dropped."""
    calls = []
    load = store.RAW["tiny"]
    monkeypatch.setitem(store.RAW, "tiny", lambda d: calls.append(1) or load(d))

    def race() -> list[store.StoredDataset]:
        barrier, out = threading.Barrier(4), []

        def one():
            barrier.wait()
            out.append(store.open_dataset("tiny"))

        threads = [threading.Thread(target=one) for _ in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        return out

    got = race()
    assert len(got) == 4 and len({d.folder for d in got}) == 1 and len(calls) == 1
    reference = got[0].train_x[:]
    for d in got[0].folder.parent.iterdir():
        if d.is_dir():
            import shutil

            shutil.rmtree(d)
    calls.clear()
    from contextlib import nullcontext

    monkeypatch.setattr(store, "_lock", lambda path: nullcontext())
    renames = []
    rename = os.rename
    monkeypatch.setattr(store.os, "rename", lambda a, b: renames.append(a) or rename(a, b))
    got = race()
    assert len({d.folder for d in got}) == 1 and len(calls) == len(renames) >= 1
    assert torch.equal(got[0].train_x[:], reference) and all(torch.equal(d.train_x[:], reference) for d in got)
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [got[0].folder.name]  # no temporaries left


def test_encode_keeps_uint8_only_when_exact():
    from fedsim.core.data.core import ImageDataset

    u8 = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    exact = ImageDataset("t", u8.float() / 255.0, torch.zeros(6, dtype=torch.int64), u8[:2].float() / 255.0,
                         torch.zeros(2, dtype=torch.int64), 2, (0.5,) * 3, (0.5,) * 3)
    raw = store.encode(exact)
    assert raw.train_x.dtype == np.uint8 and raw.divisor == 255.0 and np.array_equal(raw.train_x, u8.numpy())
    off = exact.train_x.clone()
    off[0, 0, 0, 0] += 1e-4  # one value that is not k / 255
    raw = store.encode(ImageDataset("t", off, exact.train_y, exact.test_x, exact.test_y, 2, (0.5,) * 3, (0.5,) * 3))
    assert raw.train_x.dtype == np.float32 and raw.divisor == 1.0 and np.array_equal(raw.train_x, off.numpy())


def test_missing_cifar10_names_the_fetch_command(cache, tmp_path):
    """Both ways a CIFAR-10 can be missing (no data.data_dir; a folder without torchvision's files) say how to
    get it, in one line."""
    from fedsim.core.errors import DatasetUnavailable

    for data_dir in (None, tmp_path / "empty"):
        with pytest.raises(DatasetUnavailable, match=r"fedsim data get cifar10 --to DIR") as err:
            store.open_dataset("cifar10", data_dir)
        assert "\n" not in str(err.value)
    assert not any(p.is_dir() for p in cache.iterdir())  # nothing half-written for a dataset that is not there


def test_key_follows_the_source_files_not_the_cache_under_data_dir(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "cifar-10-batches-py").mkdir(parents=True)
    (data / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"1")
    monkeypatch.setenv(store.CACHE_ENV, str(data / "cache"))
    key = store.dataset_key("cifar10", data, 0, {})
    (data / "cache" / "cifar10-x").mkdir(parents=True)  # the store writing under data_dir changes nothing
    assert store.dataset_key("cifar10", data, 0, {}) == key
    (data / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"2")  # a source file added: a new key
    assert store.dataset_key("cifar10", data, 0, {}) != key
