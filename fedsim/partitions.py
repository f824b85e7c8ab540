"""Seeded, disjoint, complete partitions of a labelled dataset across clients.

- ``iid``: a seeded shuffle cut into near-equal parts.
- ``dirichlet``: per class, proportions ~ Dir(alpha) over clients (Hsu et al. 2019, "Measuring the effects of
  non-identical data distribution"); smaller alpha means stronger label skew. Resampled (bounded) until every
  client has at least ``min_size`` samples, as flwr-datasets' ``DirichletPartitioner`` does.
- ``shards``: pathological non-IID of McMahan et al. 2017: sort by label, cut into
  ``num_clients * shards_per_client`` shards, give each client ``shards_per_client`` shards.

Why not flwr-datasets' partitioners: they need a Hugging Face ``datasets.Dataset`` (pyarrow in every Ray
worker) and ``fedsim/`` stays free of the Flower stack so that offline replay of captures works without it.
The algorithms are the same published ones; ``tests/test_partitions.py`` pins their properties.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

PARTITIONERS: dict[str, Callable[..., list[np.ndarray]]] = {}


def _register(name: str):
    def wrap(fn):
        PARTITIONERS[name] = fn
        return fn

    return wrap


@_register("iid")
def iid(labels: np.ndarray, num_clients: int, seed: int, **_: object) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(labels))
    return [np.sort(part) for part in np.array_split(perm, num_clients)]


@_register("dirichlet")
def dirichlet(labels: np.ndarray, num_clients: int, seed: int, alpha: float = 0.5, min_size: int = 1,
              max_tries: int = 100, **_: object) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    if len(labels) < num_clients * min_size:
        raise ValueError(f"{len(labels)} samples cannot give {num_clients} clients {min_size} each")
    for _ in range(max_tries):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.nonzero(labels == c)[0])
            props = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(props)[:-1] * len(idx)).astype(int)
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise ValueError(f"Dirichlet(alpha={alpha}) left a client with fewer than {min_size} samples after "
                     f"{max_tries} tries; raise data.alpha or lower run.num_clients")


@_register("shards")
def shards(labels: np.ndarray, num_clients: int, seed: int, shards_per_client: int = 2,
           **_: object) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    num_shards = num_clients * shards_per_client
    if num_shards > len(labels):
        raise ValueError(f"{num_shards} shards need at least that many samples, have {len(labels)}")
    # stable sort by label, ties broken by a seeded shuffle
    perm = rng.permutation(len(labels))
    order = perm[np.argsort(labels[perm], kind="stable")]
    shard_list = np.array_split(order, num_shards)
    assignment = rng.permutation(num_shards)
    return [np.sort(np.concatenate([shard_list[s] for s in assignment[i::num_clients]]))
            for i in range(num_clients)]


def partition(method: str, labels: np.ndarray, num_clients: int, seed: int, **options: object) -> list[np.ndarray]:
    """Indices of each client's samples. Disjoint, complete and deterministic for a given seed."""
    if method not in PARTITIONERS:
        raise ValueError(f"data.partition: {method!r} is not one of {sorted(PARTITIONERS)}")
    if num_clients < 1:
        raise ValueError("num_clients must be >= 1")
    return PARTITIONERS[method](np.asarray(labels), num_clients, seed, **options)


def label_skew(parts: list[np.ndarray], labels: np.ndarray, num_classes: int) -> float:
    """Mean total-variation distance between each client's label histogram and the global one (0 = IID)."""
    labels = np.asarray(labels)
    global_hist = np.bincount(labels, minlength=num_classes) / len(labels)
    dists = []
    for p in parts:
        if len(p) == 0:
            continue
        hist = np.bincount(labels[p], minlength=num_classes) / len(p)
        dists.append(0.5 * np.abs(hist - global_hist).sum())
    return float(np.mean(dists))
