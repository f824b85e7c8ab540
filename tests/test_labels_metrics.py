"""Metric definitions on hand-made examples, and the count fix-up (iLRG ``inds[:num_mod]`` regression)."""

import pytest
import torch

from fedsim.attacks.labels.common import fill_presence, round_to_total, samples_covered
from fedsim.core.metrics.labels import label_metrics
from fedsim.core.types import LabelRestoration


def _res(counts, probs=None):
    counts = torch.tensor(counts)
    return LabelRestoration("x", counts, torch.repeat_interleave(torch.arange(len(counts)), counts),
                            probabilities=probs)


def test_metrics_hand_made():
    true = torch.tensor([0, 0, 1, 3])  # counts [2, 1, 0, 1, 0]
    m = label_metrics(true, _res([1, 1, 1, 1, 0]), 5)
    assert m["label_leacc"] == pytest.approx(4 / 5)  # class 2 wrongly present
    assert m["label_lnacc"] == pytest.approx(3 / 5)  # classes 1, 3, 4 exact
    assert m["label_instacc"] == pytest.approx(1 - 2 / 8)  # |1-2| + |1-0| = 2 over 2K = 8
    assert "label_cossim" not in m
    assert m["label_hist_tv"] == pytest.approx(1 - m["label_instacc"])  # sum k_hat = K: TV = 1 - instacc
    # even split [.2]*5 vs [.5, .25, 0, .25, 0]: 0.5 (.3 + .05 + .2 + .05 + .2)
    assert m["label_hist_tv_even"] == pytest.approx(0.4)
    assert label_metrics(true, _res([4, 4, 0, 4, 0]), 5)["label_hist_tv"] == pytest.approx(0.5 * (1/6 + 1/12 + 1/12))
    perfect = label_metrics(true, _res([2, 1, 0, 1, 0]), 5)
    assert perfect == {"label_leacc": 1.0, "label_lnacc": 1.0, "label_instacc": 1.0, "label_hist_tv": 0.0,
                       "label_hist_tv_even": pytest.approx(0.4)}


def test_cossim_when_probabilities_available():
    p = torch.softmax(torch.randn(3, 3), -1)
    m = label_metrics(torch.tensor([0, 1]), _res([1, 1, 0], probs=p), 3, true_probabilities=p)
    assert m["label_cossim"] == pytest.approx(1.0)


def test_counts_length_checked():
    with pytest.raises(ValueError, match="num_classes"):
        label_metrics(torch.tensor([0]), _res([1, 0]), 3)


def test_round_to_total_removes_from_largest_residuals():
    # The peer code slices inds[:num_mod] with a signed num_mod = sum - K (or K - sum): whenever the sign is
    # negative it selects all but |num_mod| classes. Pin both directions: exactly |sum - K| units move.
    # Rounded sum 9 > K = 5: remove 4 units from the largest residuals (rounded - real), never below 0.
    real = torch.tensor([1.6, 1.7, 1.55, 0.2, 3.0], dtype=torch.float64)  # rounds to [2, 2, 2, 0, 3] = 9
    assert round_to_total(real, 5).tolist() == [1, 1, 1, 0, 2]
    # Rounded sum too small: add units to the classes that lost the most.
    real = torch.tensor([2.45, 0.3, 0.4, 3.0, 0.0, 0.0], dtype=torch.float64)  # rounds to [2,0,0,3,0,0] = 5
    counts = round_to_total(real, 7)
    assert counts.tolist() == [3, 0, 1, 3, 0, 0]
    # too large: remove from the classes whose rounding added the most, never below 0
    real = torch.tensor([2.5, 0.5, 1.6, 0.0], dtype=torch.float64)  # torch.round -> [2, 0, 2, 0] = 4
    assert round_to_total(real, 3).tolist() == [2, 0, 1, 0]
    real = torch.tensor([0.6, 0.6, 0.6, 0.6], dtype=torch.float64)  # rounds to 4 ones
    counts = round_to_total(real, 1)
    assert counts.sum() == 1 and counts.min() >= 0


def test_reference_slice_bug_is_a_bug():
    """What the peer code does with num_mod = -2 on 6 classes: 4 classes are modified instead of 2."""
    inds = torch.arange(6)
    num_mod = -2
    assert len(inds[:num_mod]) == 4


def test_fill_presence_and_samples_covered():
    counts = fill_presence(torch.tensor([True, False, True, False]), torch.tensor([1.0, 0, 2.0, 0]), 5)
    assert counts.tolist() == [2, 0, 3, 0]
    counts = fill_presence(torch.tensor([True, True, True]), torch.tensor([3.0, 1.0, 2.0]), 2)
    assert counts.tolist() == [1, 0, 1]
    assert samples_covered(local_steps=4, batch_size=8, num_examples=32, local_epochs=1) == 32
    assert samples_covered(local_steps=8, batch_size=10, num_examples=35, local_epochs=2) == 70
    assert samples_covered(local_steps=3, batch_size=8, num_examples=100, local_epochs=1) == 24
