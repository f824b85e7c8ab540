"""Sweep figures, in the run report's style (:mod:`fedsim.lab.plots`): leakage and utility per setting (the swept
value on the x axis when the sweep sweeps a number, else one category per setting), accuracy and leakage against
epsilon for DP sweeps, and the privacy-utility frontier across defenses (one curve per defense family, points
labelled in words with their epsilon). Every point is the mean over seeds with its 95 % t-interval. Leakage is
the attacker's own pick (no ground truth, :mod:`fedsim.lab.sweep.summary`); the oracle (best by ground truth) is
drawn as a separate, labelled upper bound, never as the headline."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fedsim.lab.sweep.summary import point_label
from fedsim.core.rows import finite_float

DPI = 110  # the frontier at 11.6 x 5 inches: 1276 px, shown at max-width 100 % in sweep.html


def _val(row: dict, key: str) -> float:
    f = finite_float(row.get(key))
    return float("nan") if f is None else f


def _err(rows: list[dict], key: str) -> list[list[float]]:
    lo, hi = [], []
    for r in rows:
        ci, m = r.get(f"{key}_ci"), _val(r, key)
        lo.append(m - ci[0] if ci else 0.0)
        hi.append(ci[1] - m if ci else 0.0)
    return [lo, hi]


def _plt():
    from fedsim.lab import plots  # sets the Agg backend

    return plots.plt, plots._RC


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def swept_axis(rows: list[dict]) -> tuple[str, list[float]] | None:
    """(key, value per row) of the swept parameter the x axis shows: the first of the sweep's ``parameters``
    (as written in every row) whose values are numbers in every setting, preferring one with distinct values;
    None for a sweep of settings tables or of non-numeric values (one category per setting then)."""
    params = next((r.get("parameters") for r in rows if r.get("parameters")), None) or []
    numeric = []
    for key in params:
        xs = [_number(r.get("setting", {}).get(key)) for r in rows]
        if rows and all(x is not None for x in xs) and len(set(xs)) > 1:
            numeric.append((key, xs))
    distinct = [(k, xs) for k, xs in numeric if len(set(xs)) == len(xs)]
    return (distinct or numeric or [None])[0]  # type: ignore[return-value]


def _scale_x(ax, xs: list[float]) -> None:
    pos = [x for x in xs if x > 0]
    if pos and max(pos) / min(pos) >= 100 and min(xs) >= 0:
        if min(xs) == 0:
            ax.set_xscale("symlog", linthresh=min(pos))
        else:
            ax.set_xscale("log")
        ax.set_xticks(sorted(set(xs)), [f"{x:g}" for x in sorted(set(xs))])
        ax.minorticks_off()


def plot_settings(rows: list[dict], title: str, path: Path, reference: dict[str, float] | None = None) -> Path:
    """Per setting: test accuracy and the acted-on label attack's LnAcc / LeAcc (left), the attacker's pick's
    PSNR with the oracle upper bound (middle), its identifiability with chance levels (right)."""
    plt, rc = _plt()
    axis = swept_axis(rows)
    if axis:  # along the swept value, so that the lines join neighbours
        order = sorted(range(len(rows)), key=lambda i: axis[1][i])
        rows, axis = [rows[i] for i in order], (axis[0], [axis[1][i] for i in order])
    xs = axis[1] if axis else list(range(len(rows)))
    with plt.rc_context(rc):
        fig, ax = plt.subplots(1, 3, figsize=(11.6, 4.2))
        for key, style, name in (("test_accuracy", "^--", "test accuracy"),
                                 ("label_lnacc", "o-", "label LnAcc (method acted on)"),
                                 ("label_leacc", "s:", "label LeAcc (method acted on)")):
            ax[0].errorbar(xs, [_val(r, key) for r in rows], yerr=_err(rows, key), fmt=style, capsize=3, label=name)
        ax[0].set_ylim(-0.02, 1.02)
        ax[0].set_ylabel("accuracy")
        ax[1].errorbar(xs, [_val(r, "psnr") for r in rows], yerr=_err(rows, "psnr"), fmt="o-", color="C3",
                       capsize=3, label="attacker's pick (lowest criterion)")
        _oracle_line(ax[1], xs, rows, "psnr_oracle")
        ax[1].set_ylabel("PSNR (dB)")
        _identifiability(ax[2], xs, rows)
        for a, key in ((ax[0], "label_lnacc"), (ax[1], "psnr")):
            if reference and key in reference:
                a.axhline(reference[key], color="grey", ls="--", lw=1, label=f"chance {key} ({reference[key]:g})")
        for a in ax:
            if axis:
                a.set_xlabel(axis[0])
                _scale_x(a, xs)
                for x, r in zip(xs, rows):
                    a.annotate(point_label(r), (x, a.get_ylim()[0]), fontsize=6, rotation=90, va="bottom",
                               xytext=(2, 4), textcoords="offset points", color="#616e7c")
            else:
                a.set_xticks(xs, [point_label(r) for r in rows], rotation=30, ha="right", fontsize=7)
            a.legend(loc="best", fontsize=7)
        fig.suptitle(f"{title}: leakage (attacker's pick) and utility, mean and 95% t-interval over seeds",
                     fontsize=10)
        _save(plt, fig, path)
    return path


def _oracle_line(ax, xs: list[float], rows: list[dict], key: str) -> None:
    """The oracle (best by ground truth) as a dashed grey line without an interval: an upper bound, not an
    attack (its interval is not that of a method fixed in advance; sweep.jsonl has it)."""
    ys = [_val(r, key) for r in rows]
    if any(math.isfinite(y) for y in ys):
        ax.plot(xs, ys, "x--", color="grey", lw=1, label="oracle best (ground-truth pick, upper bound)")


def _identifiability(ax, xs: list[float], rows: list[dict]) -> None:
    """Re-identification and class naming of the attacker's pick, each with its chance level (dotted)."""
    for key, color, name in (("ident_reid", "C4", "re-identified in the client's data"),
                             ("ident_class", "C2", "class named by a public classifier")):
        ax.errorbar(xs, [_val(r, f"{key}_acc") for r in rows], yerr=_err(rows, f"{key}_acc"), fmt="o-",
                    color=color, capsize=3, label=name)
        ax.plot(xs, [_val(r, f"{key}_chance") for r in rows], ":", color=color, lw=1, label=f"chance ({name})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("identifiability (share, attacker's pick)")


def _save(plt, fig, path: Path) -> None:
    """Lay out, write (white background) and close one sweep figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, facecolor="white")
    plt.close(fig)


def epsilon_axis(rows: list[dict]) -> list[float] | None:
    """Epsilon per row for the epsilon plots (no DP or no noise = inf); None unless a row has a finite one."""
    eps = [math.inf if (f := _number(r.get("epsilon"))) is None else f for r in rows]
    return eps if any(math.isfinite(e) for e in eps) else None


def plot_epsilon(rows: list[dict], title: str, path: Path) -> Path | None:
    """Accuracy, label leakage and image leakage against epsilon (log axis; no guarantee = "inf", drawn right
    of the largest finite epsilon); None when no setting has a finite epsilon."""
    eps = epsilon_axis(rows)
    if eps is None:
        return None
    plt, rc = _plt()
    finite = [e for e in eps if math.isfinite(e)]
    inf_at = max(finite) * 10 if max(finite) > 0 else 1.0
    xs = [e if math.isfinite(e) else inf_at for e in eps]
    order = sorted(range(len(rows)), key=lambda i: xs[i])
    pts, px = [rows[i] for i in order], [xs[i] for i in order]
    with plt.rc_context(rc):
        fig, ax = plt.subplots(1, 3, figsize=(11.6, 3.6))
        for a, key, name in ((ax[0], "test_accuracy", "final test accuracy"),
                             (ax[1], "label_lnacc", "label LnAcc (method acted on)"),
                             (ax[2], "psnr", "PSNR, attacker's pick (dB)")):
            a.errorbar(px, [_val(r, key) for r in pts], yerr=_err(pts, key), fmt="o-", capsize=3)
            if key == "psnr":
                _oracle_line(a, px, pts, "psnr_oracle")
                a.legend(loc="best", fontsize=7)
            a.set_xscale("log")
            ticks = sorted(set(px))
            a.set_xticks(ticks, ["inf" if t == inf_at and t not in finite else f"{t:.3g}" for t in ticks],
                         fontsize=7)
            a.minorticks_off()
            a.set_xlabel("epsilon (log; inf = no guarantee)")
            a.set_ylabel(name)
            if key != "psnr":
                a.set_ylim(-0.02, 1.02)
        fig.suptitle(f"{title}: utility and leakage against the privacy spent (mean, 95% t-interval over seeds)",
                     fontsize=10)
        _save(plt, fig, path)
    return path


def plot_frontier(rows: list[dict], title: str, path: Path, reference: dict[str, float] | None = None) -> Path:
    """Privacy-utility frontier across defenses: x = leakage of the attacker's pick (the label method acted on, the
    inversion with the lowest criterion), y = test accuracy."""
    plt, rc = _plt()
    with plt.rc_context(rc):
        fig, ax = plt.subplots(1, 2, figsize=(11.6, 5.0))
        families = list(dict.fromkeys(r["family"] for r in rows))
        markers = "osD^vP*Xh"
        for i, fam in enumerate(families):
            pts = [r for r in rows if r["family"] == fam]
            for a, key, xlabel in ((ax[0], "label_lnacc", "label leakage: LnAcc of the label method acted on"),
                                   (ax[1], "psnr", "image leakage: PSNR of the attacker's pick (dB)")):
                a.errorbar([_val(r, key) for r in pts], [_val(r, "test_accuracy") for r in pts],
                           xerr=_err(pts, key), yerr=_err(pts, "test_accuracy"), fmt=markers[i % len(markers)] + "-",
                           color=f"C{i}", capsize=3, label=fam, alpha=0.9)
                for r in pts:
                    a.annotate(point_label(r), (_val(r, key), _val(r, "test_accuracy")), fontsize=6,
                               xytext=(4, 3 if r["index"] % 2 else -9), textcoords="offset points")
                a.set_xlabel(xlabel + " (lower = more private)", fontsize=9)
        for a, key in ((ax[0], "label_lnacc"), (ax[1], "psnr")):
            if reference and key in reference:
                a.axvline(reference[key], color="grey", ls="--", lw=1, label=f"chance ({reference[key]:g})")
        ax[0].set_xlim(0.0, 1.05)  # t-intervals of 2-3 seeds can reach past [0, 1]: the axes stay on the scale
        for a in ax:
            a.set_ylim(0.0, 1.05)
            a.set_ylabel("final test accuracy")
            a.legend(fontsize=8, loc="lower right")
        fig.suptitle(f"{title}: privacy-utility frontier across defenses (mean, 95% t-interval over seeds; "
                     "top-left is best)", fontsize=10)
        _save(plt, fig, path)
    return path


def plot_bound(rows: list[dict], title: str, path: Path) -> Path | None:
    """Measured re-identification (pipeline: left; ORACLE-PRIOR: right) with 95 % Clopper-Pearson intervals
    beside the DP bound 1 - f(kappa) and the chance level, one category per setting; None when no point has a
    measured rate (``fedsim.lab.sweep.bound``)."""
    if not any(r.get("bound_reid") or r.get("bound_oracle") for r in rows):
        return None
    plt, rc = _plt()
    xs = list(range(len(rows)))
    with plt.rc_context(rc):
        fig, axes = plt.subplots(1, 2, figsize=(11.6, 3.9), sharey=True)
        for ax, key, name in ((axes[0], "bound_reid", "pipeline re-identification (attacker's pick)"),
                              (axes[1], "bound_oracle", "ORACLE-PRIOR attack (ground truth)")):
            pts = [(x, r[key]) for x, r in zip(xs, rows) if r.get(key)]
            if pts:
                px = [x for x, _ in pts]
                rate = [b["rate"] for _, b in pts]
                err = [[b["rate"] - b["ci"][0] for _, b in pts], [b["ci"][1] - b["rate"] for _, b in pts]]
                ax.errorbar(px, rate, yerr=err, fmt="o", capsize=4, color="C0", label="measured (95% CP)")
                bx = [x for x, b in pts if b.get("bound") is not None]
                ax.plot(bx, [b["bound"] for _, b in pts if b.get("bound") is not None], "v--", color="C3",
                        label="DP bound 1 - f(κ), any attack")
                ax.plot(px, [b["kappa"] for _, b in pts], ":", color="grey", label="chance κ")
            ax.set_xticks(xs, [point_label(r).replace("DP-SGD ", "").replace(", ", "\n") for r in rows], fontsize=7)
            ax.set_title(name, fontsize=9)
            ax.set_ylim(-0.02, 1.02)
            ax.legend(loc="upper right", fontsize=7)
        axes[0].set_ylabel("share of targets re-identified")
        fig.suptitle(f"{title}: measured re-identification vs the DP bound", fontsize=10)
        _save(plt, fig, path)
    return path
