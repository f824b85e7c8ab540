"""Soft labels (label smoothing, mixup) and the classifier input from a single-input gradient (Wang, Liang, He,
"Towards Eliminating Hard Label Constraints in Gradient Inversion Attacks", ICLR 2024).

Single input (K = 1), soft-target cross-entropy: dz = p - y, dW = (p - y) e^T is rank one. Take the
largest row v = dW_r; then e = lambda_r v for an unknown scalar lambda_r = 1 / (p_r - y_r), and every
dz_i = c_i / lambda_r with c_i = dW_i . v / |v|^2. For a candidate lambda_r the pseudo-label is
y(lambda_r) = softmax(W lambda_r v + b) - c / lambda_r; it sums to one for every lambda_r (the paper's
Theorem 1: sum_i c_i = 0), which we check and report. lambda_r is found by a 1-D search (log grid, then
bounded Brent refinement in log space; gradient descent gets stuck in local minima, paper Fig. 1) minimising
the variance loss (made scale-free, see ``search_loss``): the variance of the C - 1 smallest entries of y (label smoothing: all non-target entries
are eps / C) or of the C - 2 smallest (mixup: all but two entries are 0). The sign of lambda_r is fixed by
the paper's requirement that the classifier input comes from a ReLU-like layer (e >= 0): lambda_r v must be
mostly non-negative. With a classifier bias the scalar is known exactly, lambda_r = 1 / db_r (Theorem 1 of
Geiping et al.), and ``use_bias=True`` (default) uses it; ``use_bias=False`` forces the search.

Outputs: ``soft_labels`` [1, C], ``embeddings`` [1, m] (the recovered last-layer input), ``probabilities`` [C],
counts = one-hot of the argmax, extras ``smoothing`` (eps = C * mean of the non-target entries) or ``mixup``
(lambda, second class), ``lambda_r``, ``sum_residual``.

Batch extension (K > 1, fedsim's, not in the paper): the mean soft label is y_bar = p_bar - db with p_bar from
``ilrg-refine``'s batch-mean embedding; for label smoothing y_bar = (1 - eps) k / K + eps / C, so with
``smoothing=eps`` given (or estimated as C * min(y_bar) when some class is absent) k = K (y_bar - eps/C) / (1-eps),
rounded to sum K. Needs the classifier bias.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from fedsim.attacks.labels.common import check_num_samples, counts_to_labels, last_layer, require_bias, round_to_total
from fedsim.core.errors import AttackNotApplicable
from fedsim.core.types import LabelRestoration


def _pseudo_label(lam: float, w: torch.Tensor, b: torch.Tensor, v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return torch.softmax(w @ (lam * v) + b, dim=0) - c / lam


def variance_loss(y: torch.Tensor, kind: str) -> float:
    """Variance of the entries that should all be equal (C-1 smallest for smoothing, C-2 for mixup)."""
    drop = 1 if kind == "smoothing" else 2
    rest = torch.sort(y).values[: len(y) - drop]
    return float(rest.var(unbiased=False))


def search_loss(y: torch.Tensor, kind: str, delta: float = 1e-6) -> float:
    """The search objective: the variance loss made scale-free (divided by mean^2 + delta^2 of the same
    entries) plus a penalty for entries outside [0, 1]. Without the normalisation the plain variance also
    tends to 0 as |lambda_r| grows (softmax saturates to a one-hot, every non-top entry -> 0)."""
    drop = 1 if kind == "smoothing" else 2
    rest = torch.sort(y).values[: len(y) - drop]
    outside = float((-y).clamp_min(0).sum() + (y - 1).clamp_min(0).sum())
    return float(rest.var(unbiased=False) / (rest.mean() ** 2 + delta ** 2)) + 1e3 * outside


def search_lambda(w, b, v, c, kind: str, sign: float, grid: int = 600, max_logit: float = 50.0) -> float:
    """Minimise ``search_loss`` over lambda = sign * 10**t: log grid, then Brent refinement.

    Range: the logit change |lambda| * max|W v| between 1e-6 and ``max_logit`` (beyond it the softmax is a
    one-hot to double precision and any lambda fits)."""
    scale = float((w @ v).abs().max())
    hi = math.log10(max_logit / scale)
    lo = hi - math.log10(max_logit) - 6.0
    ts = np.linspace(lo, hi, grid)
    losses = [search_loss(_pseudo_label(sign * 10 ** t, w, b, v, c), kind) for t in ts]
    i = int(np.argmin(losses))
    a, bnd = ts[max(i - 1, 0)], ts[min(i + 1, grid - 1)]
    res = minimize_scalar(lambda t: search_loss(_pseudo_label(sign * 10 ** t, w, b, v, c), kind),
                          bounds=(a, bnd), method="bounded", options={"xatol": 1e-10})
    t = res.x if res.fun <= losses[i] else ts[i]
    return sign * 10 ** float(t)


def _summary(y: torch.Tensor, kind: str) -> dict:
    order = torch.argsort(y, descending=True)
    if kind == "smoothing":
        c = len(y)
        return {"smoothing": float(c * y[order[1:]].mean())}
    return {"mixup": {"lambda": float(y[order[0]]), "classes": (int(order[0]), int(order[1]))}}


def restore_soft(model: nn.Module, gradients, num_samples: int, kind: str = "smoothing", use_bias: bool = True,
                 smoothing: float | None = None, **options) -> LabelRestoration:
    if kind not in ("smoothing", "mixup"):
        raise ValueError(f"soft: kind {kind!r} is not one of ['mixup', 'smoothing']")
    k = check_num_samples(num_samples)
    fc, gw, gb = last_layer(model, gradients)
    w = fc.weight.detach().to(gw.device, torch.float64)
    b = fc.bias.detach().to(gw.device, torch.float64) if fc.bias is not None else torch.zeros_like(w[:, 0])
    if k > 1:
        return _batch(model, gradients, k, gb, smoothing, kind, **options)
    r = int(torch.argmax(gw.norm(dim=1)))
    v = gw[r]
    if float(v.norm()) == 0.0:
        raise AttackNotApplicable("soft: the classifier weight gradient is zero")
    c = gw @ v / (v @ v)
    if gb is not None and use_bias and float(gb[r]) != 0.0:
        lam, how = 1.0 / float(gb[r]), "bias"
    else:
        sign = 1.0 if float(v.clamp_min(0).sum()) >= float((-v).clamp_min(0).sum()) else -1.0
        lam, how = search_lambda(w, b, v, c, kind, sign), "search"
    y = _pseudo_label(lam, w, b, v, c)
    emb = lam * v
    probs = torch.softmax(w @ emb + b, dim=0)
    counts = torch.zeros(len(y), dtype=torch.long, device=y.device)
    counts[int(torch.argmax(y))] = 1
    extras = {"lambda_r": lam, "how": how, "sum_residual": float(y.sum() - 1.0),
              "variance_loss": variance_loss(y, kind), **_summary(y, kind)}
    return LabelRestoration(method="soft", counts=counts, labels=counts_to_labels(counts),
                            soft_labels=y[None].to(fc.weight.dtype), embeddings=emb[None].to(fc.weight.dtype),
                            probabilities=probs.to(fc.weight.dtype),
                            extras=extras)


def _batch(model, gradients, k: int, gb, smoothing: float | None, kind: str, **options) -> LabelRestoration:
    from fedsim.attacks.labels.refine import restore_ilrg_refine

    gb = require_bias(gb, "soft (batch)", "llg")
    ref = restore_ilrg_refine(model, gradients, k, **options)
    y_bar = ref.extras["mean_probability"] - gb
    c = len(y_bar)
    eps = smoothing
    if eps is None:
        eps = min(max(c * float(y_bar.min()), 0.0), 0.999) if kind == "smoothing" else 0.0
    real = k * (y_bar - eps / c) / (1.0 - eps)
    counts = round_to_total(real, k)
    return LabelRestoration(method="soft", counts=counts, labels=counts_to_labels(counts),
                            soft_labels=y_bar[None].to(ref.probabilities.dtype),
                            probabilities=ref.extras["mean_probability"].to(ref.probabilities.dtype),
                            extras={"smoothing": eps, "real_counts": real, "sum_residual": float(y_bar.sum() - 1.0),
                                    "how": "batch"})
