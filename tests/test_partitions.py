import numpy as np
import pytest

from fedsim.core.partitions import PARTITIONERS, label_skew, partition


@pytest.fixture(scope="module")
def labels():
    return np.random.default_rng(0).integers(0, 10, size=3000)


@pytest.mark.parametrize("method", sorted(PARTITIONERS))
def test_disjoint_complete_deterministic(method, labels):
    parts = partition(method, labels, 12, seed=5, alpha=0.3, shards_per_client=2)
    assert len(parts) == 12
    allidx = np.concatenate(parts)
    assert len(allidx) == len(labels)  # complete, and with the next line disjoint
    assert np.array_equal(np.sort(allidx), np.arange(len(labels)))
    again = partition(method, labels, 12, seed=5, alpha=0.3, shards_per_client=2)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = partition(method, labels, 12, seed=6, alpha=0.3, shards_per_client=2)
    assert any(not np.array_equal(a, b) for a, b in zip(parts, other))


def test_dirichlet_skew_grows_as_alpha_falls(labels):
    skews = [np.mean([label_skew(partition("dirichlet", labels, 10, seed=s, alpha=a), labels, 10)
                      for s in range(3)]) for a in (100.0, 1.0, 0.1)]
    assert skews[0] < skews[1] < skews[2]
    assert skews[0] < 0.1 and skews[2] > 0.5


def test_iid_is_balanced(labels):
    parts = partition("iid", labels, 10, seed=0)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert label_skew(parts, labels, 10) < 0.1


def test_shards_give_few_classes_per_client():
    labels = np.repeat(np.arange(10), 100)
    parts = partition("shards", labels, 10, seed=0, shards_per_client=2)
    assert all(len(np.unique(labels[p])) <= 2 for p in parts)


def test_unknown_method_names_choices(labels):
    with pytest.raises(ValueError, match="dirichlet"):
        partition("zipf", labels, 3, seed=0)


def test_example_cap_is_a_seeded_sample_of_the_partition():
    from fedsim.core.config import from_flat
    from fedsim.core.experiment import client_indices

    cfg = from_flat({"data.dataset": "digits", "data.partition": "iid", "data.max_examples_per_client": 40,
                     "run.num_clients": 3})
    idx = client_indices(cfg, 1, 3)
    full = client_indices(cfg.replace(**{"data.max_examples_per_client": 0}), 1, 3)
    assert len(idx) == 40 and set(idx) <= set(full)
    assert np.array_equal(idx, client_indices(cfg, 1, 3))
    from fedsim.core.experiment import dataset
    assert len(np.unique(dataset(cfg).train_y.numpy()[idx])) >= 5  # not a label-sorted prefix
