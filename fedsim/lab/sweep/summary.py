"""What a sweep point reports: per run (one seed) the leakage of every attack and the utility, then per setting
the strongest attack and a 95 % t-interval over the seeds on both axes.

Strongest attack: per setting, the label method with the highest LnAcc and the inversion method with the highest
PSNR, each as a mean over the seeds of the per-run mean over attacked updates. The attacker thus picks ONE method
per defense (it cannot pick per update: that would need the ground truth); the interval is over the seeds of
that method. Intervals of bounded metrics are clipped to the metric's range (``BOUNDS``): a t-interval over 3 seeds
of accuracies near 1 would otherwise reach above 1 (clipping keeps the interval's coverage, it only drops the
impossible part). Epsilon: the largest that the run's privacy rows report (DP-SGD clients, Opacus), else computed by
:mod:`fedsim.core.accounting` from the config and the rounds that actually aggregated (central and local DP).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from fedsim.core.defense_registry import in_force, spent_for_config
from fedsim.core.config import ExperimentConfig
from fedsim.core.rows import InversionRow, LabelRow, LostRoundRow, PrivacyRow, UtilityRow, finite_float
from fedsim.core.runfolder import RunFolder


def _finite(values: Iterable[Any]) -> list[float]:
    return [f for v in values if isinstance(v, (int, float)) and (f := finite_float(v)) is not None]


def _mean(values: Iterable[Any]) -> float | None:
    vals = _finite(values)
    return sum(vals) / len(vals) if vals else None


#: The range of every metric a sweep point reports an interval for: accuracies, LnAcc / LeAcc in [0, 1]; SSIM in
#: [-1, 1] (torchmetrics' SSIM can be negative for anti-correlated images); PSNR (dB, pixels in [0, 1]) >= 0.
BOUNDS: dict[str, tuple[float, float]] = {
    "test_accuracy": (0.0, 1.0), "heldout_accuracy": (0.0, 1.0), "label_lnacc": (0.0, 1.0),
    "label_leacc": (0.0, 1.0), "ssim": (-1.0, 1.0), "psnr": (0.0, math.inf)}


def t_interval(values: Iterable[Any], level: float = 0.95, bounds: tuple[float, float] | None = None,
               ) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high): Student-t interval over the values (seeds); low = high = None with fewer than 2.
    ``bounds``: the metric's range; the interval is clipped to it."""
    vals = _finite(values)
    if not vals:
        return None, None, None
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, None, None
    from scipy.stats import t

    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    half = float(t.ppf(0.5 + level / 2, len(vals) - 1)) * sd / math.sqrt(len(vals))
    lo, hi = m - half, m + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return m, lo, hi


def _rounds_aggregated(folder: RunFolder, cfg: ExperimentConfig) -> int:
    util = [r.round for r in folder.rows(UtilityRow) if r.round > 0]
    lost = {r.round for r in folder.rows(LostRoundRow)}
    ran = max(util) if util else cfg.run.num_rounds
    return max(0, ran - len(lost))


def _epsilon(folder: RunFolder, cfg: ExperimentConfig, delta: float) -> dict[str, Any]:
    rows = folder.rows(PrivacyRow)
    if rows:  # a null epsilon (written before "inf" was spelled out) was a non-finite one: no guarantee
        top = max(rows, key=lambda r: math.inf if r.epsilon is None else r.epsilon)
        return {"epsilon": math.inf if top.epsilon is None else top.epsilon, "delta": top.delta,
                "accountant": top.accountant,
                "dp_mechanism": top.mechanism or "dp_sgd", "epsilon_source": "privacy rows"}
    from fedsim.core.experiment import client_indices

    n = len(client_indices(cfg, 0, cfg.run.num_clients)) if "dp_sgd" in in_force(cfg.defense) else None
    spent = spent_for_config(cfg, _rounds_aggregated(folder, cfg), delta, client_examples=n)
    if not spent:
        return {"epsilon": None, "delta": None, "accountant": None, "dp_mechanism": None, "epsilon_source": None}
    top = max(spent, key=lambda s: s.epsilon)
    return {"epsilon": top.epsilon, "delta": top.delta, "accountant": top.accountant, "dp_mechanism": top.mechanism,
            "epsilon_source": f"fedsim.core.accounting ({top.releases} releases{'; ' + top.note if top.note else ''})"}


def summarize(run: Path, cfg: ExperimentConfig, delta: float = 1e-5) -> dict[str, Any]:
    """One run folder's measurements: utility, every attack method's mean leakage, epsilon."""
    folder = RunFolder(run)
    util = [r for r in folder.rows(UtilityRow)]
    final = max(util, key=lambda r: r.round) if util else None
    labels = [r for r in folder.rows(LabelRow) if r.ok and not r.replay]
    # one row per (method, update): a replay that was redone after an interruption counts once (the last)
    inv = list({(r.method, r.round, r.client): r for r in folder.rows(InversionRow) if r.ok}.values())
    label_methods: dict[str, dict[str, float | None]] = {}
    for m in dict.fromkeys(r.method for r in labels):
        rows = [r for r in labels if r.method == m]
        label_methods[m] = {"lnacc": _mean(r.label_lnacc for r in rows), "leacc": _mean(r.label_leacc for r in rows),
                            "n": len(rows)}
    inversion_methods: dict[str, dict[str, float | None]] = {}
    for m in dict.fromkeys(r.method for r in inv):
        rows = [r for r in inv if r.method == m]
        # the image of the method's first attacked update (by place, never by a ground-truth score)
        shown = min((r for r in rows if r.image), default=rows[0],
                    key=lambda r: tuple(v if isinstance(v, int) else math.inf for v in (r.round, r.client)))
        inversion_methods[m] = {"psnr": _mean(r.psnr for r in rows), "ssim": _mean(r.ssim for r in rows),
                                "n": len(rows), "image": str(Path(run) / shown.image) if shown.image else None}
    out: dict[str, Any] = {
        "test_accuracy": final.test_accuracy if final else None,
        "heldout_accuracy": final.heldout_accuracy if final else None,
        "rounds": final.round if final else 0,
        "lost_rounds": len(folder.rows(LostRoundRow)),
        "label_methods": label_methods,
        "inversion_methods": inversion_methods,
        "attacked_updates": len({(r.round, r.client) for r in labels}),
        "failed_attacks": sum(1 for r in folder.rows(LabelRow) + folder.rows(InversionRow) if not r.ok),
    }
    out.update(_epsilon(folder, cfg, delta))
    return out


def _best(per_seed: list[dict], key: str, score: str) -> str | None:
    methods = list(dict.fromkeys(m for s in per_seed for m in s[key]))
    means = {m: _mean(s[key].get(m, {}).get(score) for s in per_seed) for m in methods}
    means = {m: v for m, v in means.items() if v is not None}
    return max(means, key=lambda m: means[m]) if means else None


def _put(row: dict, name: str, values: list) -> None:
    mean, lo, hi = t_interval(values, bounds=BOUNDS.get(name))
    row[name] = mean
    row[f"{name}_ci"] = [lo, hi] if lo is not None else None
    row[f"{name}_values"] = [v if v is None or math.isfinite(v) else None for v in values]


def aggregate(per_seed: list[dict]) -> dict[str, Any]:
    """One sweep point from its runs (one per seed): means, 95 % t-intervals, the winning attacks."""
    row: dict[str, Any] = {"seeds_run": len(per_seed),
                           "interval": "95% Student-t over seeds, clipped to the metric's range"}
    _put(row, "test_accuracy", [s["test_accuracy"] for s in per_seed])
    _put(row, "heldout_accuracy", [s.get("heldout_accuracy") for s in per_seed])
    lab = _best(per_seed, "label_methods", "lnacc")
    row["label_best"] = lab
    _put(row, "label_lnacc", [s["label_methods"].get(lab, {}).get("lnacc") for s in per_seed])
    _put(row, "label_leacc", [s["label_methods"].get(lab, {}).get("leacc") for s in per_seed])
    row["label_by_method"] = {m: _mean(s["label_methods"].get(m, {}).get("lnacc") for s in per_seed)
                              for m in dict.fromkeys(m for s in per_seed for m in s["label_methods"])}
    inv = _best(per_seed, "inversion_methods", "psnr")
    row["inversion_best"] = inv
    _put(row, "psnr", [s["inversion_methods"].get(inv, {}).get("psnr") for s in per_seed])
    _put(row, "ssim", [s["inversion_methods"].get(inv, {}).get("ssim") for s in per_seed])
    row["psnr_by_method"] = {m: _mean(s["inversion_methods"].get(m, {}).get("psnr") for s in per_seed)
                             for m in dict.fromkeys(m for s in per_seed for m in s["inversion_methods"])}
    # the strongest inversion's image of its first attacked update (the name predates that choice)
    row["best_image"] = next((s["inversion_methods"][inv]["image"] for s in per_seed
                              if inv in s["inversion_methods"] and s["inversion_methods"][inv].get("image")), None)
    eps = [s["epsilon"] for s in per_seed]
    if any(e is not None for e in eps):
        known = [float(e) for e in eps if e is not None and not math.isnan(float(e))]
        row["epsilon"] = max(known) if known else math.inf  # same config per seed: the largest (worst) one
        row["delta"] = next(s["delta"] for s in per_seed if s["delta"] is not None)
        row["accountant"] = next(s["accountant"] for s in per_seed if s["accountant"])
        row["dp_mechanism"] = next(s["dp_mechanism"] for s in per_seed if s["dp_mechanism"])
        row["epsilon_source"] = next(s["epsilon_source"] for s in per_seed if s["epsilon_source"])
    else:
        row.update(epsilon=None, delta=None, accountant=None, dp_mechanism=None, epsilon_source=None)
    row["attacked_updates"] = sum(s["attacked_updates"] for s in per_seed)
    row["lost_rounds"] = sum(s["lost_rounds"] for s in per_seed)
    return row


def point_label(row: dict) -> str:
    """The point's words on the plot: "DP-SGD sigma 0.5, clip 4, eps 5.0" / "no defense"."""
    eps = row.get("epsilon")
    if eps is None:
        return row["label"]
    text = "inf" if not math.isfinite(eps) else (f"{eps:.3g}" if eps < 1000 else f"{eps:.2e}")
    return f"{row['label']}, eps {text}"
