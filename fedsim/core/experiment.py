"""What both Flower apps derive from an ``ExperimentConfig``: the model, each client's data, the test split.

Everything is a pure function of the config (and the partition id), so the server, the clients and offline
replay agree without sharing state.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from fedsim.core.config import ExperimentConfig
from fedsim.core.errors import ConfigError
from fedsim.core.data import StoredDataset, open_dataset
from fedsim.core.device import resolve_device
from fedsim.core.models import build_model, model_options
from fedsim.core.objref import options_of
from fedsim.core.partitions import partition


@lru_cache(maxsize=4)
def dataset_for(name: str, data_dir: str, image_size: int = 0, options: str = "") -> StoredDataset:
    """The dataset's memory-mapped store (``fedsim.core.data.store``: written once per machine, opened once per
    process; Ray reuses worker processes across rounds). Nothing is read here but its metadata: callers index
    ``train_x`` / ``test_x`` for the rows they need. ``options``: ``data.options``."""
    return open_dataset(name, data_dir or None, image_size=image_size, options=options_of("data.options", options))


def _data_key(cfg: ExperimentConfig) -> tuple[str, str, int, str]:
    d = cfg.data
    return d.dataset, d.data_dir, d.image_size, d.options


def dataset(cfg: ExperimentConfig) -> StoredDataset:
    return dataset_for(*_data_key(cfg))


def device(cfg: ExperimentConfig) -> torch.device:
    """``run.device`` resolved on this machine (``auto``: CUDA when present)."""
    return resolve_device(cfg.run.device)


def make_model(cfg: ExperimentConfig) -> nn.Module:
    """The global model with its seeded initial weights: the one way the server, every client, replay and every
    attack build it. A zoo name or the user's ``package.module:factory``, called as
    ``factory(input_shape=(C, H, W), num_classes=K, **options)`` with the dataset's shape and class count."""
    ds = dataset(cfg)
    return build_model(cfg.model.name, ds.input_shape, ds.num_classes, seed=cfg.run.seed, **model_options(cfg.model))


def check_model(cfg: ExperimentConfig) -> nn.Module:
    """Build the model once and run two test images through it: a one-line ``ConfigError`` naming
    ``model.name`` when the factory raises, returns no ``nn.Module`` or gives the wrong output shape."""
    ds = dataset(cfg)
    name = cfg.model.name
    try:
        model = make_model(cfg)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"model.name: building {name!r} raised {type(exc).__name__}: {_one_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.name: {name!r} returned a {type(model).__name__}, not a torch.nn.Module")
    x = ds.normalize((ds.test_x if len(ds.test_x) else ds.train_x)[:2])  # two rows read, not the split
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise ConfigError(f"model.name: {name!r} fails on a batch of {tuple(x.shape)} inputs: "
                          f"{type(exc).__name__}: {_one_line(exc)}") from None
    expected = (len(x), ds.num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model.name: {name!r} maps a batch of {tuple(x.shape)} inputs to {got}; the data "
                          f"({cfg.data.dataset}) has {ds.num_classes} classes: expected logits {expected}")
    return model


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


@lru_cache(maxsize=8)
def _partitions(data_key: tuple, method: str, num_clients: int, seed: int, alpha: float,
                shards_per_client: int) -> tuple[np.ndarray, ...]:
    labels = dataset_for(*data_key).train_y.numpy()  # labels only: no pixel is read to partition
    return tuple(partition(method, labels, num_clients, seed, alpha=alpha, shards_per_client=shards_per_client))


def client_indices(cfg: ExperimentConfig, partition_id: int, num_partitions: int) -> np.ndarray:
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id {partition_id} outside [0, {num_partitions})")
    parts = _partitions(_data_key(cfg), cfg.data.partition, num_partitions, cfg.run.seed,
                        cfg.data.alpha, cfg.data.shards_per_client)
    idx = parts[partition_id]
    cap = cfg.data.max_examples_per_client
    if cap and len(idx) > cap:  # a seeded random subset (the pool is label-sorted: a prefix would be 1 class)
        rng = np.random.default_rng((cfg.run.seed, partition_id))
        idx = np.sort(rng.choice(idx, size=cap, replace=False))
    return idx


def client_data(cfg: ExperimentConfig, partition_id: int, num_partitions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A client's normalised training inputs and labels: only its partition's rows are read from the store."""
    ds = dataset(cfg)
    idx = client_indices(cfg, partition_id, num_partitions)
    return ds.normalize(ds.train_x[idx]), ds.train_y[torch.from_numpy(idx)]


def test_data(cfg: ExperimentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised test split (the server's central evaluation)."""
    ds = dataset(cfg)
    return ds.normalize(ds.test_x[:]), ds.test_y


HELDOUT = slice(0, None, 2)  # even-indexed half of the test split: never read by tuning (that uses [1::2])
VALIDATION = slice(1, None, 2)  # odd-indexed half: the validation split of benchmarks/defenses.py tune


def local_seed(run_seed: int, server_round: int, client_id: int) -> int:
    """Seed of a client's local batch order in a round (deterministic re-derivation)."""
    return (run_seed * 1_000_003 + server_round * 10_007 + client_id) % (2**31)
