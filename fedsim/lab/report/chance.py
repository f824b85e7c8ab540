"""Chance levels for the headline: what an attacker who ignores the update scores.

Labels: a uniform random guess, K labels drawn independently and uniformly from the C classes (K and the true
per-class counts k from the label row's ``true_counts``). Per class the guessed count is X ~ Binomial(K, 1/C), so
exactly: labels recovered E[sum_i min(X_i, k_i)] / K with E[min(X, k)] = sum_{j=1..k} P(X >= j); counts exact
(LnAcc) (1/C) sum_i P(X_i = k_i); class presence (LeAcc) (1/C) sum_i P([X_i > 0] = [k_i > 0]).
Images: the row's ``psnr_chance``, the PSNR of the constant dataset-mean image against the true batch (computed
in ``fedsim.evaluation.scoring``, where the ground truth is); identifiability (``fedsim.evaluation.identify``)
with its own chance levels: re-identification 1 / pool size, class naming the batch's majority-class share.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from fedsim.lab.report.common import counts, mean, num


def _pmf(k: int, n: int, p: float) -> float:
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)
    return math.exp(log)


def guess_scores(true: Sequence[int]) -> dict[str, float] | None:
    """Expected (instacc, lnacc, leacc) of a uniform random guess of K = sum(true) labels over C = len(true)."""
    c, k_total = len(true), int(sum(true))
    if c < 1 or k_total < 1:
        return None
    p = 1.0 / c
    pmf = [_pmf(j, k_total, p) for j in range(max(true) + 1)]
    p_zero = pmf[0]
    overlap = sum(sum(1.0 - sum(pmf[:j]) for j in range(1, k + 1)) for k in true)  # sum_j P(X >= j)
    return {"label_instacc": overlap / k_total,
            "label_lnacc": sum(pmf[k] for k in true) / c,
            "label_leacc": sum((1.0 - p_zero) if k > 0 else p_zero for k in true) / c}


def label_chance(rows: Sequence[Any]) -> dict[str, float] | None:
    """Mean chance levels over the rows that carry their true counts (None when none does)."""
    per = [g for g in (guess_scores(t) for t in (counts(getattr(r, "true_counts", None)) for r in rows) if t)
           if g is not None]
    if not per:
        return None
    return {k: sum(g[k] for g in per) / len(per) for k in per[0]}


def psnr_chance(rows: Sequence[Any]) -> float | None:
    return mean(num(getattr(r, "psnr_chance", None)) for r in rows)


IDENT = (("re-identified", "ident_reid_acc", "ident_reid_chance"),
         ("class named", "ident_class_acc", "ident_class_chance"))


def share(v: Any, missing: str = "–") -> str:
    """A share as a percentage with the digits a small chance level needs (0.05 %, 3 %, 40 %)."""
    f = num(v)
    if f is None:
        return missing
    return f"{100 * f:.2f}%" if 0 < abs(f) < 0.01 else f"{100 * f:.0f}%"


def identifiability(rows: Sequence[Any]) -> dict[str, float | None]:
    """Mean of each ``ident_*`` score and chance level over the rows (None where no row has it)."""
    return {k: mean(getattr(r, k, None) for r in rows) for _, acc, chance in IDENT for k in (acc, chance)}


def ident_words(rows: Sequence[Any]) -> str:
    """The rows' identifiability in words (re-identified 40% (chance 0.05%) · class named ...), or why it is
    missing."""
    means = identifiability(rows)
    parts = [f"{name} {share(means[acc])} (chance {share(means[chance])})" for name, acc, chance in IDENT
             if means[acc] is not None]
    return " · ".join(parts) or "identifiability not recorded (rows written before it)"
