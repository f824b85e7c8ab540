"""iLRG: instance-wise batch label restoration (Ma, Sun, Li, Xu, Zhou, Gong, "Instance-wise Batch Label
Restoration via Gradients in Federated Learning", ICLR 2023; Algorithm 1).

1. Class-wise embeddings e_i = dW_i / db_i (Theorem 1 + Approx. 1 and 2; a tiny |db_i| is replaced by
   +-eps, all in float64).
2. Class-wise probabilities P[i] = softmax(W e_i + b).
3. The (C+1) x C linear system  sum_j k_j P[j, i] - k_i = K db_i  (i = 1..C)  and  sum_i k_i = K,
   solved with the Moore-Penrose pseudo-inverse.
4. Outliers (negative or > K) are set to 0, the rest rounded, and the sum fixed up to exactly K
   (``common.round_to_total``: REMOVE units from the largest residuals when the rounded sum is too large -
   the reference code's ``inds[:num_mod]`` with negative ``num_mod`` changed the wrong classes).

``ilrg-prior``: first run a presence method (``prior="gi-ext"`` default, or ``"rlg"``, or pass a bool mask
``present=``), drop the absent classes' unknowns (all C equations kept) and solve the smaller system.

Works for untrained models (the paper's main setting, where even Approx. 2 is bypassed); accuracy drops on
trained models and when K >> C (db_i becomes a small difference of large terms). Needs the classifier bias:
without it raises ValueError naming the fallback (``geng``, eq. 16 on the weight rows, or ``llg``).
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.attacks.labels.common import (check_num_samples, counts_to_labels, last_layer, require_bias, round_to_total,
                                   safe_divisor, softmax_of_embeddings)
from fedsim.attacks.labels.gi import restore_gi_ext
from fedsim.attacks.labels.idlg import restore_idlg
from fedsim.attacks.labels.rlg import restore_rlg
from fedsim.core.types import LabelRestoration

FALLBACK = "llg"
#: the presence priors of ``ilrg-prior`` (the same functions as their ``LABEL_METHODS`` entries)
PRIOR_METHODS = {"gi-ext": restore_gi_ext, "rlg": restore_rlg, "idlg": restore_idlg}


def class_embeddings(gw: torch.Tensor, gb: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """e_i = dW_i / db_i (rows), float64, non-finite entries zeroed."""
    emb = gw / safe_divisor(gb, eps)[:, None]
    return torch.nan_to_num(emb, nan=0.0, posinf=0.0, neginf=0.0)


def solve_counts(probs: torch.Tensor, gb: torch.Tensor, k: int, columns: torch.Tensor | None = None) -> torch.Tensor:
    """Least-squares solution of [P^T - I; 1^T] n = [K db; K] (``probs`` rows = class-wise probabilities).

    ``columns``: indices of the classes allowed to be present (others fixed to 0).
    """
    c, like = len(gb), dict(dtype=torch.float64, device=gb.device)
    a = probs.T - torch.eye(c, **like)  # a[i, j] = P[j, i] - delta_ij
    a = torch.cat([a, torch.ones(1, c, **like)])
    rhs = torch.cat([k * gb, torch.full((1,), float(k), **like)])
    idx = torch.arange(c, device=gb.device) if columns is None else columns.to(gb.device)
    # minimum-norm least squares = the Moore-Penrose solution pinv(A) @ rhs; "gelsy" (rank-revealing QR)
    # is ~20x faster than an SVD-based pinv at C = 1000
    sol = torch.linalg.lstsq(a[:, idx], rhs[:, None], driver="gelsy").solution[:, 0]
    real = torch.zeros(c, **like)
    real[idx] = sol
    return real


def filter_and_round(real: torch.Tensor, k: int) -> torch.Tensor:
    """iLRG post-processing: outliers (< 0, or > K after rounding) to 0, round, fix the sum to K."""
    cleaned = torch.where((real < 0) | (torch.round(real) > k), torch.zeros_like(real), real)
    return round_to_total(cleaned, k)


def _ilrg(method: str, model: nn.Module, gradients, num_samples: int, columns=None, extras=None,
          eps: float = 1e-30) -> LabelRestoration:
    k = check_num_samples(num_samples)
    fc, gw, gb = last_layer(model, gradients)
    gb = require_bias(gb, method, FALLBACK)
    emb = class_embeddings(gw, gb, eps)
    probs = softmax_of_embeddings(fc, emb)
    real = solve_counts(probs, gb, k, columns)
    counts = filter_and_round(real, k)
    return LabelRestoration(method=method, counts=counts, labels=counts_to_labels(counts),
                            embeddings=emb.to(fc.weight.dtype), probabilities=probs.to(fc.weight.dtype),
                            extras={"real_counts": real, **(extras or {})})


def restore_ilrg(model: nn.Module, gradients, num_samples: int, eps: float = 1e-30, **options) -> LabelRestoration:
    return _ilrg("ilrg", model, gradients, num_samples, eps=eps)


def restore_ilrg_prior(model: nn.Module, gradients, num_samples: int, prior: str = "gi-ext",
                       present: torch.Tensor | None = None, eps: float = 1e-30, **options) -> LabelRestoration:
    if present is None:
        if prior not in ("gi-ext", "rlg", "idlg"):
            raise ValueError(f"ilrg-prior: prior {prior!r} is not one of ['gi-ext', 'idlg', 'rlg']")
        present = PRIOR_METHODS[prior](model, gradients, num_samples, **options).extras["presence"]
    present = torch.as_tensor(present).bool()
    if int(present.sum()) == 0:
        present = torch.ones_like(present)
    columns = torch.nonzero(present).flatten()
    return _ilrg("ilrg-prior", model, gradients, num_samples, columns=columns,
                 extras={"presence": present, "prior": prior}, eps=eps)
