"""What both Flower apps derive from an ``ExperimentConfig``: the model, each client's data, the test split.

Everything is a pure function of the config (and the partition id), so the server, the clients and offline
replay agree without sharing state.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fedsim.core.config import ExperimentConfig
from fedsim.core.errors import ConfigError
from fedsim.core.data import ImageDataset, load_dataset
from fedsim.core.device import resolve_device
from fedsim.core.models import build_model, model_options
from fedsim.core.objref import options_of
from fedsim.core.partitions import partition


@lru_cache(maxsize=4)
def dataset_for(name: str, data_dir: str, image_size: int = 0, options: str = "") -> ImageDataset:
    """Loaded once per process (Ray reuses worker processes across rounds); ``options``: ``data.options``."""
    return load_dataset(name, data_dir or None, image_size=image_size, options=options_of("data.options", options))


def _data_key(cfg: ExperimentConfig) -> tuple[str, str, int, str]:
    d = cfg.data
    return d.dataset, d.data_dir, d.image_size, d.options


def dataset(cfg: ExperimentConfig) -> ImageDataset:
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
    x = ds.normalize((ds.test_x if len(ds.test_x) else ds.train_x)[:2])
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
    labels = dataset_for(*data_key).train_y.numpy()
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
    """A client's normalised training inputs and labels."""
    ds = dataset(cfg)
    idx = torch.from_numpy(client_indices(cfg, partition_id, num_partitions))
    return ds.normalize(ds.train_x[idx]), ds.train_y[idx]


def test_data(cfg: ExperimentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    ds = dataset(cfg)
    return ds.normalize(ds.test_x), ds.test_y


HELDOUT = slice(0, None, 2)  # even-indexed half of the test split: never read by tuning (that uses [1::2])
VALIDATION = slice(1, None, 2)  # odd-indexed half: the validation split of benchmarks/defenses.py tune


def local_seed(run_seed: int, server_round: int, client_id: int) -> int:
    """Seed of a client's local batch order in a round (deterministic re-derivation)."""
    return (run_seed * 1_000_003 + server_round * 10_007 + client_id) % (2**31)


PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Environment variable that, when set, anchors relative run folders (instead of the installed checkout).
ROOT_ENV = "FEDSIM_ROOT"


@lru_cache(maxsize=1)
def _installed_checkout() -> Path | None:
    """The source folder of an editable install of fedsim in this environment (``pip install -e .``), if any."""
    import json
    from importlib import metadata
    from urllib.parse import unquote, urlparse

    for dist in metadata.distributions(name="fedsim"):  # a source tree's own fedsim.egg-info has no direct_url
        try:
            info = json.loads(dist.read_text("direct_url.json") or "{}")
        except ValueError:
            continue
        url = urlparse(info.get("url", ""))
        root = Path(unquote(url.path))
        if info.get("dir_info", {}).get("editable") and url.scheme == "file" and (root / "fedsim").is_dir():
            return root
    return None


def project_root() -> Path:
    """Where relative run folders are anchored: ``$FEDSIM_ROOT`` when set, else the checkout fedsim is installed
    from (editable install, as ``make venv`` and the Dockerfile do), else the checkout of this module.

    Not simply this module's folder: Flower runs the ServerApp from its installed copy of the app
    (``$FLWR_HOME/apps/<app>/``) while ClientApps may import the checkout, and both must find one folder."""
    env = os.environ.get(ROOT_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return _installed_checkout() or PROJECT_ROOT


def run_dir(cfg: ExperimentConfig) -> Path:
    """The run folder: ``run.out_dir`` (the lab entry points always pass it absolute), else ``runs/<name>``.
    Relative paths are anchored at :func:`project_root`, so the ServerApp and the ClientApps agree whatever
    their working directory or the copy of the app they run from (``flwr run .``)."""
    path = Path(cfg.run.out_dir).expanduser() if cfg.run.out_dir else Path("runs") / cfg.run.name
    return path if path.is_absolute() else project_root() / path
