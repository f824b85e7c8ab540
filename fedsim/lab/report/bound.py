"""Epsilon's scale in the report: the DP bound on any re-identification beside the measured rates.

One line per measured rate, pooled over the run's attacked updates (``fedsim.lab.sweep.bound`` does the same per
sweep point): the pipeline's re-identification of its inversions (rows with ``reid_bound``) and the ORACLE-PRIOR
attack (``oracle_prior`` rows, ground truth), each with its 95 % Clopper-Pearson interval and the bound
1 - f(kappa) of the mechanism (Hayes et al. 2023; Kulynych et al. 2025), e.g. "re-identified 0 % [0, 3 %] of 120,
bound 14 % (chance 1.6 %)". Without such rows (or beside them, on the headline card), :func:`epsilon_meaning` puts
epsilon in words: the bound of those rows, else the (epsilon, delta) scale e^epsilon kappa + delta (Balle, Cherubin
& Hayes 2022).
"""

from __future__ import annotations

import math

from fedsim.core.reconstruction_bound import Measured
from fedsim.lab.report.chance import identifiability, share
from fedsim.lab.report.common import e, num, ok
from fedsim.lab.report.data import RunData


def _pooled(name: str, items: list[tuple[int, int, float | None, float | None]]) -> Measured | None:
    items = [(h, n, b, k) for h, n, b, k in items if n > 0 and b is not None]
    trials = sum(n for _, n, _, _ in items)
    if not trials:
        return None
    return Measured(name, sum(h for h, _, _, _ in items), trials, sum(b * n for _, n, b, _ in items) / trials,
                    sum((k or 0.0) * n for _, n, _, k in items) / trials)


def measured(data: RunData) -> list[tuple[Measured, str]]:
    """(pooled rate beside its bound, the mechanism it is the bound of) for the pipeline and the ORACLE-PRIOR."""
    out = []
    inv = [r for r in data.inversions if r.ok and r.reid_bound is not None and r.ident_reid_acc is not None]
    reid = _pooled("re-identified", [(round(r.ident_reid_acc * n), n, r.reid_bound, r.ident_reid_chance)
                                     for r in inv if (n := len(r.psnr_per_image or []) or int(r.num_images or 0))])
    if reid is not None:
        out.append((reid, inv[0].bound_mechanism or ""))
    orc = [r for r in data.oracle_prior if r.ok and r.targets]
    oracle = _pooled("ORACLE-PRIOR re-identified", [(int(r.hits), int(r.targets), r.bound, r.kappa) for r in orc])
    if oracle is not None:
        out.append((oracle, orc[0].bound_mechanism or ""))
    return out


def bound_html(data: RunData) -> str:
    """The report's lines, or "" when no row carries a bound."""
    lines = measured(data)
    if not lines:
        return ""
    items = "".join(f"<li><b>{e(m.line())}</b>{' — above the bound: calibration bug' if m.above_bound else ''}"
                    f' <span class="muted">({e(mech)})</span></li>' for m, mech in lines)
    return ("<p>What ε means here: no attack that must single out its target among candidates (chance κ) "
            "succeeds more often than the bound 1 - f(κ), f the mechanism's trade-off curve (Hayes et al. 2023; "
            "Kulynych et al. 2025). Measured, pooled over attacked updates, 95% Clopper-Pearson (the pipeline "
            "scores the attacked batch's examples, so its bound assumes the target was in the batch; ORACLE-PRIOR "
            "is Hayes et al.'s prior-aware attacker, which reads ground truth — the candidates, the other training "
            "examples and the batch — a measure of how tight the bound is, not an attack a server can run):</p>"
            f"<ul>{items}</ul>")


#: the candidates of the (epsilon, delta) scale when the run records no re-identification chance
SCALE_CANDIDATES = 100


def epsilon_meaning(data: RunData, epsilon: float, delta) -> str:
    """What the epsilon bounds, in words. With the run's reconstruction-bound rows (``reid_bound``, the f-DP bound
    1 - f(kappa) of :mod:`fedsim.core.reconstruction_bound`): that bound at the run's chance level. Otherwise the
    (epsilon, delta) scale of Balle, Cherubin & Hayes 2022 ("Reconstructing training data with informed
    adversaries": (epsilon, delta)-DP implies reconstruction robustness e^epsilon kappa + delta): no attack that
    must pick its target among n = 1 / kappa candidates succeeds with probability above e^epsilon / n + delta."""
    if math.isinf(epsilon):
        return "no guarantee: a mechanism without noise"
    lines = measured(data)
    if lines:
        m = lines[0][0]
        return (f"any reconstruction attack succeeds with probability ≤ {m.bound:.0%} (chance {share(m.kappa)}; "
                f"the f-DP bound of its mechanism, see privacy)")
    kappa = identifiability([r for r in data.inversions if ok(r)])["ident_reid_chance"]
    n = round(1 / kappa) if kappa else SCALE_CANDIDATES
    d = num(delta) or 0.0
    bound = min(1.0, math.exp(min(epsilon, 700.0)) / n + d)
    return (f"scale: an attack that must pick its target among {n} candidates succeeds with probability "
            f"≤ {bound:.1%} (e^ε / {n} + δ; Balle et al. 2022)")
