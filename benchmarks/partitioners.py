"""Our partitions (fedsim/core/partitions.py) vs flwr-datasets' partitioners on the same labels and seeds.

    .venv/bin/python -m benchmarks.partitioners            # mnist_subset train split (4000 labels), 10 clients

IID: identical index sets to ``IidPartitioner`` on ``Dataset.shuffle(seed=seed)`` (Flower's IID is contiguous
shards of the dataset as given; ours shuffles with the same ``default_rng(seed).permutation``). Dirichlet and
shards: the same published algorithms with different random-number draws, compared by label skew (mean total-
variation distance of a client's label histogram from the global one) over 20 seeds, and timed.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks import harness as h


def main(seeds: int = 20, clients: int = 10) -> None:
    t = time.perf_counter()
    from datasets import Dataset
    from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner, ShardPartitioner
    import_s = time.perf_counter() - t

    from fedsim.core.data import load_dataset
    from fedsim.core.partitions import label_skew, partition

    y = load_dataset("mnist_subset").train_y.numpy()
    base = Dataset.from_dict({"label": y, "idx": np.arange(len(y))})

    def theirs(p, ds=base) -> list[np.ndarray]:
        p.dataset = ds
        return [np.sort(np.asarray(p.load_partition(i)["idx"])) for i in range(clients)]

    same = all(all(np.array_equal(a, b) for a, b in zip(partition("iid", y, clients, s),
                                                           theirs(IidPartitioner(clients), base.shuffle(seed=s))))
               for s in range(seeds))
    print(f"import flwr_datasets + datasets: {import_s:.2f} s; {len(y)} labels, {clients} clients, {seeds} seeds")
    print(f"iid: identical index sets to IidPartitioner on Dataset.shuffle(seed): {same}")
    for name, ours, flower in (
            ("dirichlet alpha=0.5", lambda s: partition("dirichlet", y, clients, s, alpha=0.5),
             lambda s: theirs(DirichletPartitioner(clients, "label", 0.5, min_partition_size=1, seed=s))),
            ("shards 2/client", lambda s: partition("shards", y, clients, s, shards_per_client=2),
             lambda s: theirs(ShardPartitioner(clients, "label", num_shards_per_partition=2, seed=s)))):
        rows = []
        for fn in (ours, flower):
            t = time.perf_counter()
            parts = [fn(s) for s in range(seeds)]
            rows.append(([label_skew(p, y, 10) for p in parts], (time.perf_counter() - t) / seeds,
                         [max(len(np.unique(y[c])) for c in p) for p in parts]))
        (so, to, co), (sf, tf, cf) = rows
        print(f"{name}: label skew ours {np.mean(so):.3f} +- {np.std(so):.3f}, flwr-datasets {np.mean(sf):.3f} +- "
              f"{np.std(sf):.3f}; most classes on a client ours {max(co)}, theirs {max(cf)}; "
              f"time per partition ours {1e3 * to:.1f} ms, theirs {1e3 * tf:.0f} ms")


if __name__ == "__main__":
    p = h.parser(__doc__, seeds=20)
    p.add_argument("--clients", type=int, default=10)
    a = h.parse(p)
    main(a.seeds, a.clients)
