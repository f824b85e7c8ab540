"""Epsilon's scale in the report: the DP bound on any re-identification beside the measured rates.

One line per measured rate, pooled over the run's attacked updates (``fedsim.lab.sweep.bound`` does the same per
sweep point): the pipeline's re-identification of its inversions (rows with ``reid_bound``) and the ORACLE-PRIOR
attack (``oracle_prior`` rows, ground truth), each with its 95 % Clopper-Pearson interval and the bound
1 - f(kappa) of the mechanism (Hayes et al. 2023; Kulynych et al. 2025), e.g. "re-identified 0 % [0, 3 %] of 120,
bound 14 % (chance 1.6 %)".
"""

from __future__ import annotations

from fedsim.core.reconstruction_bound import Measured
from fedsim.lab.report.common import e
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
