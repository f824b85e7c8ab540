"""The DP reconstruction bound beside measured re-identification, per sweep point, and the check that fails a sweep
whose measured rate lies above its bound beyond the rate's interval (a calibration bug).

Two measured rates per point, pooled over attacked updates and seeds (each target one Bernoulli trial; the
interval is Clopper-Pearson, exact, 95 %):

* ``bound_reid``: the regular pipeline's re-identification (``ident_reid_acc`` of the attacker's pick per update:
  the reconstruction's nearest image in the client's pool is its source; chance 1 / pool size), beside the bound
  of each row (``InversionRow.reid_bound``: conditioned on the target being in the attacked batch, since only the
  batch is scored; ``fedsim.evaluation.bounds``);
* ``bound_oracle``: the ORACLE-PRIOR attack (``OraclePriorRow``: Hayes et al.'s prior-aware attacker, ground truth),
  every example of the partition a target among ``candidates`` (chance ``kappa``), beside its bound.

The bound of the pooled rate is the trial-weighted mean of the rows' bounds (each target's success probability is
at most its own bound, so the expected pooled rate is at most their mean).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from fedsim.core.reconstruction_bound import Measured, check_measured
from fedsim.core.rows import InversionRow, OraclePriorRow, finite_float
from fedsim.core.runfolder import RunFolder

KEYS = (("bound_reid", "re-identified"), ("bound_oracle", "ORACLE-PRIOR re-identified"))


def _tally(items: Iterable[tuple[int, int, float | None, float | None]]) -> dict[str, Any] | None:
    hits = trials = 0
    bound_sum = kappa_sum = 0.0
    bounded = True
    for h, n, bound, kappa in items:
        if n <= 0:
            continue
        hits, trials = hits + h, trials + n
        kappa_sum += (kappa or 0.0) * n
        if bound is None:
            bounded = False
        else:
            bound_sum += bound * n
    if not trials:
        return None
    return {"hits": hits, "trials": trials, "bound_sum": bound_sum if bounded else None, "kappa_sum": kappa_sum}


def run_tallies(run: Path, picks: list[InversionRow]) -> dict[str, Any]:
    """Per run: hits / trials / summed bounds of the pipeline's re-identification (the attacker's picks) and of
    the ORACLE-PRIOR attack's rows."""
    reid = []
    for r in picks:
        acc, chance = finite_float(r.ident_reid_acc), finite_float(r.ident_reid_chance)
        n = len(r.psnr_per_image or []) or int(r.num_images or 0)
        if acc is None or not n:
            continue
        reid.append((round(acc * n), n, finite_float(r.reid_bound), chance))
    latest = {(r.round, r.client): r for r in RunFolder(run).rows(OraclePriorRow)}  # a replay supersedes
    oracle = [(int(r.hits), int(r.targets), finite_float(r.bound), finite_float(r.kappa))
              for r in latest.values() if r.ok and r.targets]
    return {"bound_reid": _tally(reid), "bound_oracle": _tally(oracle)}


def aggregate_bounds(row: dict[str, Any], per_seed: list[dict]) -> None:
    """The point's pooled rates, intervals and bounds (``bound_reid`` / ``bound_oracle``: rate, ci, hits, trials,
    bound, kappa, line)."""
    for key, name in KEYS:
        parts = [s.get(key) for s in per_seed if s.get(key)]
        if not parts:
            row[key] = None
            continue
        hits, trials = sum(p["hits"] for p in parts), sum(p["trials"] for p in parts)
        bounded = all(p["bound_sum"] is not None for p in parts)
        bound = sum(p["bound_sum"] for p in parts) / trials if bounded else None
        kappa = sum(p["kappa_sum"] for p in parts) / trials
        m = Measured(name, hits, trials, bound if bound is not None else 1.0, kappa)
        lo, hi = m.interval
        row[key] = {"rate": m.rate, "ci": [lo, hi], "hits": hits, "trials": trials, "bound": bound, "kappa": kappa,
                    "line": m.line() if bound is not None else
                    f"{name} {m.rate:.0%} [{lo:.0%}, {hi:.0%}] of {trials}, no DP bound (chance {kappa:.1%})"}


def measured_of(row: dict[str, Any]) -> list[Measured]:
    out = []
    for key, name in KEYS:
        b = row.get(key)
        if b and b.get("bound") is not None:
            out.append(Measured(name, int(b["hits"]), int(b["trials"]), float(b["bound"]), float(b["kappa"])))
    return out


def check_rows(rows: list[dict[str, Any]]) -> None:
    """Raise ``BoundViolation`` (one line, exit 1) when a point's measured rate lies above its DP bound beyond its
    95 % interval."""
    for row in rows:
        check_measured(measured_of(row), where=f"sweep point {row.get('label', row.get('index'))!s}")
