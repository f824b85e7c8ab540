"""What a sweep point reports: per run (one seed) the leakage of every attack and the utility, then per setting
the attacker's pick and a 95 % t-interval over the seeds on both axes.

The headline is the attacker's own choice, made without ground truth (:mod:`fedsim.lab.pick`): per
attacked update the inversion row with the lowest ``criterion`` (the attack's own score; rows without one fall
back to the first configured method, and ``inversion_pick_rule`` says so); per run the mean over updates of that
row's PSNR / SSIM / identifiability (``fedsim.evaluation.identify``: class named by a public-split classifier,
re-identification in the client's pool, each with its chance level). Labels: the method the server acts on, the one
whose labels the inversion used (``InversionRow.label_source``), else the first configured label method.
The best by ground truth is kept as a labelled upper bound, the **oracle**: per update the inversion row with the
highest PSNR (``psnr_oracle``), and the label method with the highest mean LnAcc over seeds (``label_lnacc_oracle``,
``label_oracle``). The oracle's interval is not that of a method fixed in advance (the pick reads the truth).
Intervals of bounded metrics are clipped to the metric's range (``BOUNDS``): a t-interval over 3 seeds
of accuracies near 1 would otherwise reach above 1 (clipping keeps the interval's coverage, it only drops the
impossible part). Epsilon: the largest that the run's privacy rows report (DP-SGD clients, Opacus), else computed by
:mod:`fedsim.core.accounting` from the config and the rounds that actually aggregated (central and local DP).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from fedsim.core.defense.registry import in_force, spent_for_config
from fedsim.core.config import ExperimentConfig
from fedsim.core.lists import comma_list
from fedsim.core.rows import InversionRow, LabelRow, LostRoundRow, PrivacyRow, UtilityRow, finite_float
from fedsim.core.runfolder import RunFolder
from fedsim.lab.pick import FALLBACK, acted_label, attacker_picks, oracle_picks, rule_of


def _finite(values: Iterable[Any]) -> list[float]:
    return [f for v in values if isinstance(v, (int, float)) and (f := finite_float(v)) is not None]


def _mean(values: Iterable[Any]) -> float | None:
    vals = _finite(values)
    return sum(vals) / len(vals) if vals else None


#: The range of every metric a sweep point reports an interval for: accuracies, LnAcc / LeAcc in [0, 1]; SSIM in
#: [-1, 1] (torchmetrics' SSIM can be negative for anti-correlated images); PSNR (dB, pixels in [0, 1]) >= 0.
BOUNDS: dict[str, tuple[float, float]] = {
    "test_accuracy": (0.0, 1.0), "heldout_accuracy": (0.0, 1.0), "label_lnacc": (0.0, 1.0),
    "label_leacc": (0.0, 1.0), "ssim": (-1.0, 1.0), "psnr": (0.0, math.inf), "label_lnacc_oracle": (0.0, 1.0),
    "psnr_oracle": (0.0, math.inf), "ident_class_acc": (0.0, 1.0), "ident_class_chance": (0.0, 1.0),
    "ident_reid_acc": (0.0, 1.0), "ident_reid_chance": (0.0, 1.0), "ident_reid_acc_oracle": (0.0, 1.0),
    "exact_fraction": (0.0, 1.0)}

#: the scores of the attacker's pick a sweep point reports (mean over updates per run, interval over seeds)
PICK_SCORES = ("psnr", "ssim", "ident_class_acc", "ident_class_chance", "ident_reid_acc", "ident_reid_chance")


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
        inversion_methods[m] = {"psnr": _mean(r.psnr for r in rows), "ssim": _mean(r.ssim for r in rows),
                                "n": len(rows)}
    out: dict[str, Any] = {
        "test_accuracy": final.test_accuracy if final else None,
        "heldout_accuracy": final.heldout_accuracy if final else None,
        "rounds": final.round if final else 0,
        "lost_rounds": len(folder.rows(LostRoundRow)),
        "label_methods": label_methods,
        "label_acted": acted_label_method(cfg, inv, label_methods),
        "inversion_methods": inversion_methods,
        "inversion_pick": inversion_pick(run, cfg, inv),
        "inversion_oracle": inversion_oracle(inv),
        "exact_recovery": exact_recovery(inv),
        "attacked_updates": len({(r.round, r.client) for r in labels}),
        "failed_attacks": sum(1 for r in folder.rows(LabelRow) + folder.rows(InversionRow) if not r.ok),
    }
    out.update(_epsilon(folder, cfg, delta))
    from fedsim.lab.sweep.bound import run_tallies  # the DP bound beside measured re-identification

    out.update(run_tallies(run, [p.row for p in attacker_picks(inv, _configured(cfg, "inversion"))]))
    return out


def _configured(cfg: ExperimentConfig, key: str) -> list[str]:
    return [m for m in comma_list(getattr(cfg.attack, key, "")) if m.lower() != "none"]


def acted_label_method(cfg: ExperimentConfig, inv: list[InversionRow], label_methods: dict) -> dict[str, Any]:
    """The label method the server acts on (:func:`fedsim.lab.pick.acted_label`): the one whose labels the
    inversions used, else the first configured label method that ran; ``why`` says which."""
    ran = [m for m in _configured(cfg, "label_methods") if m in label_methods]
    method, why = acted_label(inv, ran + [m for m in label_methods if m not in ran])
    return {"method": method, "why": why}


def inversion_pick(run: Path, cfg: ExperimentConfig, inv: list[InversionRow]) -> dict[str, Any]:
    """The attacker's pick per attacked update (no ground truth), averaged over the run's updates: its scores
    (``PICK_SCORES``), how often each method was picked, the rule, and the image of the first update's pick."""
    configured = _configured(cfg, "inversion")
    picks = attacker_picks(inv, configured)
    out: dict[str, Any] = {k: _mean(getattr(p.row, k, None) for p in picks) for k in PICK_SCORES}
    methods: dict[str, int] = {}
    for p in picks:
        methods[str(p.row.method)] = methods.get(str(p.row.method), 0) + 1
    shown = next((p.row for p in picks if p.row.image), None)  # the first update by place, never by a score
    out.update(n=len(picks), methods=methods, rule=rule_of(picks), configured=configured,
               image=str(Path(run) / shown.image) if shown is not None else None)
    return out


def inversion_oracle(inv: list[InversionRow]) -> dict[str, Any]:
    """Per update the row with the highest PSNR (a ground-truth pick: an upper bound), averaged over updates; and
    the highest re-identification of any row per update."""
    rows = oracle_picks(inv)
    reid = [max(_finite(r.ident_reid_acc for r in same), default=None)
            for same in _by_update(inv).values()]
    return {"psnr": _mean(r.psnr for r in rows), "ssim": _mean(r.ssim for r in rows),
            "ident_reid_acc": _mean(reid), "n": len(rows)}


def exact_recovery(inv: list[InversionRow]) -> dict[str, Any] | None:
    """The exact-recovery ceiling of a run (issue 36; the report's line, ``fedsim.lab.report.inversions``): of the
    updates an exact attack (spear, spear++, analytic-fc) was scored on, how many it recovered whole (every image
    to max-abs pixel error < 1e-3) and the mean exact share per update (best exact method per update). None when
    no exact attack was scored."""
    from fedsim.lab.report.inversions import EXACT_METHODS

    best: dict[tuple, float] = {}
    for r in inv:
        f = finite_float(getattr(r, "exact_fraction", None))
        if r.method in EXACT_METHODS and f is not None:
            best[(r.round, r.client)] = max(best.get((r.round, r.client), 0.0), f)
    if not best:
        return None
    return {"updates": len(best), "whole": sum(1 for f in best.values() if f >= 1.0),
            "fraction": _mean(best.values()),
            "methods": sorted({str(r.method) for r in inv if r.method in EXACT_METHODS})}


def _by_update(inv: list[InversionRow]) -> dict[tuple, list[InversionRow]]:
    out: dict[tuple, list[InversionRow]] = {}
    for r in inv:
        out.setdefault((r.round, r.client), []).append(r)
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
    _labels(row, per_seed)
    _inversions(row, per_seed)
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
    from fedsim.lab.sweep.bound import aggregate_bounds

    aggregate_bounds(row, per_seed)  # pooled re-identification (pipeline, ORACLE-PRIOR) with CP intervals, bound
    row["attacked_updates"] = sum(s["attacked_updates"] for s in per_seed)
    row["lost_rounds"] = sum(s["lost_rounds"] for s in per_seed)
    return row


def _labels(row: dict[str, Any], per_seed: list[dict]) -> None:
    """The label method the server acts on (headline) and the best by ground truth (oracle, labelled)."""
    acted = [s.get("label_acted", {}).get("method") for s in per_seed]
    lab = next((m for m in acted if m), None)
    if lab is None:  # a summary written before label_acted: the first method that ran
        lab = next((m for s in per_seed for m in s["label_methods"]), None)
    row["label_best"] = lab  # the name predates the attacker's pick: the method the server acts on
    row["label_pick_rule"] = next((s["label_acted"]["why"] for s in per_seed if s.get("label_acted", {}).get("why")),
                                  "first label method that ran")
    _put(row, "label_lnacc", [s["label_methods"].get(lab, {}).get("lnacc") for s in per_seed])
    _put(row, "label_leacc", [s["label_methods"].get(lab, {}).get("leacc") for s in per_seed])
    row["label_by_method"] = {m: _mean(s["label_methods"].get(m, {}).get("lnacc") for s in per_seed)
                              for m in dict.fromkeys(m for s in per_seed for m in s["label_methods"])}
    oracle = _best(per_seed, "label_methods", "lnacc")
    row["label_oracle"] = oracle
    _put(row, "label_lnacc_oracle", [s["label_methods"].get(oracle, {}).get("lnacc") for s in per_seed])


def _inversions(row: dict[str, Any], per_seed: list[dict]) -> None:
    """The attacker's pick (headline, ``PICK_SCORES``), the oracle (labelled upper bound), every method's mean."""
    picks = [s.get("inversion_pick") or _first_method(s) for s in per_seed]
    for key in PICK_SCORES:
        _put(row, key, [p.get(key) for p in picks])
    counts: dict[str, int] = {}
    for p in picks:
        for m, n in (p.get("methods") or {}).items():
            counts[m] = counts.get(m, 0) + n
    row["inversion_picks"] = counts
    row["inversion_best"] = max(counts, key=lambda m: counts[m]) if counts else None  # most often picked
    rules = list(dict.fromkeys(p["rule"] for p in picks if p.get("rule")))
    row["inversion_pick_rule"] = "; ".join(rules) if rules else None
    row["inversion_pick_fallback"] = any(FALLBACK in r for r in rules)
    oracles = [s.get("inversion_oracle") or _best_method(s) for s in per_seed]
    _put(row, "psnr_oracle", [o.get("psnr") for o in oracles])
    _put(row, "ident_reid_acc_oracle", [o.get("ident_reid_acc") for o in oracles])
    row["psnr_by_method"] = {m: _mean(s["inversion_methods"].get(m, {}).get("psnr") for s in per_seed)
                             for m in dict.fromkeys(m for s in per_seed for m in s["inversion_methods"])}
    exact = [s.get("exact_recovery") for s in per_seed]
    if any(exact):
        known = [x for x in exact if x]
        row["exact_updates"] = sum(x["updates"] for x in known)
        row["exact_whole"] = sum(x["whole"] for x in known)
        _put(row, "exact_fraction", [x["fraction"] if x else None for x in exact])
        row["exact_methods"] = sorted({m for x in known for m in x["methods"]})
    # the attacker's pick at the first attacked update (by place) of the first seed that has an image
    row["best_image"] = next((p["image"] for p in picks if p.get("image")), None)


def _first_method(summary: dict) -> dict[str, Any]:
    """A per-run summary written before the attacker's pick: its first inversion method (fixed in advance)."""
    methods = summary.get("inversion_methods") or {}
    m = next(iter(methods), None)
    if m is None:
        return {}
    return {**methods[m], "methods": {m: methods[m].get("n") or 0}, "rule": FALLBACK,
            "image": methods[m].get("image")}


def _best_method(summary: dict) -> dict[str, Any]:
    """The oracle of a per-run summary written before it: the method with the best mean PSNR."""
    means = [v for v in (summary.get("inversion_methods") or {}).values() if finite_float(v.get("psnr")) is not None]
    return max(means, key=lambda v: v["psnr"], default={})


def point_label(row: dict) -> str:
    """The point's words on the plot: "DP-SGD sigma 0.5, clip 4, eps 5.0" / "no defense"."""
    eps = row.get("epsilon")
    if eps is None:
        return row["label"]
    text = "inf" if not math.isfinite(eps) else (f"{eps:.3g}" if eps < 1000 else f"{eps:.2e}")
    return f"{row['label']}, eps {text}"


def ceiling_line(row: dict) -> str | None:
    """A sweep point's exact-recovery ceiling in words (the sweep page and the terminal): "spear recovered 3 of 3
    attacked updates exactly" (every image to max-abs pixel error < 1e-3), or None when no exact attack was
    scored at this point. Where it is whole, no prior-based attack can do better on these updates."""
    n = row.get("exact_updates")
    if not n:
        return None
    whole, methods = int(row.get("exact_whole") or 0), ", ".join(row.get("exact_methods") or ())
    frac = finite_float(row.get("exact_fraction"))
    part = f"; mean exact share {frac:.0%}" if frac is not None and whole < n else ""
    return f"exact-recovery ceiling ({methods}): {whole} of {n} attacked updates recovered exactly{part}"
