"""RLG: Revealing Labels from Gradients (Dang, Thakkar, Mathews, Mohan, Shmatikov, "Revealing and Protecting
Labels in Distributed Training", NeurIPS 2021).

The classifier weight gradient factors as dW = Z E^T with Z = [p_k - y_k] (C x K). Its column space
(left singular vectors U[:, :S], S = numerical rank, at most K) contains every column of Z, and a sample of
class c has a column that is negative at c and positive elsewhere. So class c is reported present iff the
linear programme "find r with u_c . r <= -1 and u_j . r >= 1 for all j != c" is feasible
(``scipy.optimize.linprog``, HiGHS). Needs K < C (rank of Z at most min(K, C - 1)); presence only, counts
beyond presence are a uniform fill. Works with negative activations and without a classifier bias.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linprog
from torch import nn

from fedsim.attacks.labels.common import check_num_samples, counts_to_labels, fill_presence, last_layer
from fedsim.core.types import LabelRestoration


def _separable(q: np.ndarray, c: int) -> bool:
    """Is there r with q[c] . r <= -1 and q[j] . r >= 1 for all j != c?"""
    others = np.delete(q, c, axis=0)
    a_ub = np.vstack([q[c:c + 1], -others])
    b_ub = -np.ones(len(a_ub))
    res = linprog(np.zeros(q.shape[1]), A_ub=a_ub, b_ub=b_ub, bounds=[(None, None)] * q.shape[1],
                  method="highs")
    return res.status == 0


def restore_rlg(model: nn.Module, gradients, num_samples: int, rank_tol: float = 1e-6, **options) -> LabelRestoration:
    k = check_num_samples(num_samples)
    _, gw, _ = last_layer(model, gradients)
    u, s, _ = torch.linalg.svd(gw, full_matrices=False)
    rank = int((s > rank_tol * s[0]).sum()) if float(s[0]) > 0 else 0
    rank = max(1, min(rank, k))
    q = u[:, :rank].cpu().numpy()  # the host crossing for scipy's linear programs
    present = torch.tensor([_separable(q, c) for c in range(q.shape[0])], dtype=torch.bool, device=gw.device)
    counts = fill_presence(present, -gw.sum(dim=1), k)
    return LabelRestoration(method="rlg", counts=counts, labels=counts_to_labels(counts),
                            presence_only=int(present.sum()) != k,
                            extras={"presence": present, "rank": rank})
