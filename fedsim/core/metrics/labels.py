"""Label restoration metrics (one definition each, used by tests, benchmarks and the server's scoring).

With true per-class counts k (from the K true labels) and restored counts k_hat, over all C classes:

* ``label_leacc``   LeAcc (Ma et al., iLRG): share of the C classes whose presence (k > 0) is predicted right,
                    (1/C) sum_i [ (k_hat_i > 0) == (k_i > 0) ].
* ``label_lnacc``   LnAcc as the iLRG code computes it (``accuracy_score(num_instances, rec_instances)``): share
                    of the C classes whose count is exactly right, (1/C) sum_i [ k_hat_i == k_i ]. Note that
                    absent classes predicted absent count as right, so with C >> K it is dominated by them.
* ``label_instacc`` instance-level accuracy 1 - sum_i |k_hat_i - k_i| / (2K): the share of the K labels that
                    are right under the best matching (equals the multiset overlap sum_i min(k_hat_i, k_i) / K
                    when sum k_hat = K). The label accuracy of Geng et al. Tables 3 / 4.
* ``label_cossim``  (when the restoration has class-wise probabilities [C, C] and ``true_probabilities`` are
                    given) mean cosine similarity between recovered and true class-wise average post-softmax
                    probabilities over the classes present in the batch (iLRG Table 1's CosSim); for a
                    single probability vector [C], its cosine similarity with the true vector.
* ``label_hist_tv`` total-variation distance between the restored and the true label *histograms* (each
                    normalised to sum 1), 0.5 sum_i |k_hat_i / sum k_hat - k_i / K|: how much of the client's
                    label distribution leaks, 0 = all of it (equals 1 - ``label_instacc`` when sum k_hat = K).
                    ``label_hist_tv_even``: the same distance for the even split K / C, the guess that knows
                    nothing (a skewed client is far from it; what an attack gains is the gap).
"""

from __future__ import annotations

import torch

from fedsim.core.types import LabelRestoration


def true_counts(true_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(torch.as_tensor(true_labels).long().flatten(), minlength=num_classes)[:num_classes]


def leacc(true: torch.Tensor, pred: torch.Tensor) -> float:
    return float(((true > 0) == (pred > 0)).double().mean())


def lnacc(true: torch.Tensor, pred: torch.Tensor) -> float:
    return float((true == pred).double().mean())


def instacc(true: torch.Tensor, pred: torch.Tensor) -> float:
    k = int(true.sum())
    return 1.0 - float((pred - true).abs().sum()) / (2.0 * k)


def hist_tv(true: torch.Tensor, pred: torch.Tensor) -> float:
    """Total-variation distance of the two count vectors as distributions (an all-zero ``pred``: 1)."""
    t, p = true.double(), pred.double().clamp_min(0)
    if float(p.sum()) <= 0:
        return 1.0
    return 0.5 * float((p / p.sum() - t / t.sum()).abs().sum())


def cossim(true_probs: torch.Tensor, pred_probs: torch.Tensor, present: torch.Tensor | None = None) -> float:
    t, p = true_probs.double(), pred_probs.double()
    if t.ndim == 1:
        return float(torch.nn.functional.cosine_similarity(t, p, dim=0))
    sims = torch.nn.functional.cosine_similarity(t, p, dim=-1)
    if present is not None:
        sims = sims[present]
    return float(sims.mean())


def label_metrics(true_labels: torch.Tensor, restored: LabelRestoration, num_classes: int,
                  true_probabilities: torch.Tensor | None = None) -> dict[str, float]:
    """LeAcc, LnAcc, instance accuracy (and CosSim when probabilities are available on both sides)."""
    pred = torch.as_tensor(restored.counts).long().flatten()
    true = true_counts(true_labels, num_classes).to(pred.device)  # scored where the restoration is
    if len(pred) != num_classes:
        raise ValueError(f"restored counts have length {len(pred)}, expected num_classes={num_classes}")
    out = {"label_leacc": leacc(true, pred), "label_lnacc": lnacc(true, pred), "label_instacc": instacc(true, pred),
           "label_hist_tv": hist_tv(true, pred), "label_hist_tv_even": hist_tv(true, torch.ones_like(pred))}
    if restored.probabilities is not None and true_probabilities is not None:
        probs = torch.as_tensor(restored.probabilities).double()
        tp = torch.as_tensor(true_probabilities, device=probs.device).double()
        out["label_cossim"] = cossim(tp, probs, true > 0 if tp.ndim == 2 and len(tp) == num_classes else None)
    return out
