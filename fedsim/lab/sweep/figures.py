"""Sweep figures: leakage and utility per setting (with 95 % intervals), and the privacy-utility frontier
across defenses (one curve per defense family, points labelled in words with their epsilon)."""

from __future__ import annotations

from pathlib import Path

from fedsim.lab.sweep.summary import point_label
from fedsim.rows import finite_float


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_settings(rows: list[dict], title: str, path: Path, reference: dict[str, float] | None = None) -> Path:
    """Per setting: test accuracy and the winning label attack's LnAcc (left), its PSNR (right), 95 % intervals."""
    plt = _plt()
    xs = list(range(len(rows)))
    names = [point_label(r) for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, style, name in (("test_accuracy", "^--", "test accuracy"), ("label_lnacc", "o-", "label LnAcc (best)"),
                             ("label_leacc", "s:", "label LeAcc (best)")):
        ax[0].errorbar(xs, [_val(r, key) for r in rows], yerr=_err(rows, key), fmt=style, capsize=3, label=name)
    ax[0].set_ylim(-0.02, 1.02)
    ax[0].set_ylabel("accuracy")
    ax[1].errorbar(xs, [_val(r, "psnr") for r in rows], yerr=_err(rows, "psnr"), fmt="o-", color="C3", capsize=3,
                   label="PSNR of the best inversion (dB)")
    ax[1].set_ylabel("PSNR (dB)")
    for a, key in ((ax[0], "label_lnacc"), (ax[1], "psnr")):
        if reference and key in reference:
            a.axhline(reference[key], color="grey", ls="--", lw=1, label=f"chance {key} ({reference[key]:g})")
    for a in ax:
        a.set_xticks(xs, names, rotation=30, ha="right", fontsize=7)
        a.grid(alpha=0.3)
        a.legend(loc="best", fontsize=8)
    fig.suptitle(f"{title}: leakage (strongest attack) and utility, mean and 95% t-interval over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_frontier(rows: list[dict], title: str, path: Path, reference: dict[str, float] | None = None) -> Path:
    """Privacy-utility frontier across defenses: x = leakage of the strongest attack, y = test accuracy."""
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(13, 5.5))
    families = list(dict.fromkeys(r["family"] for r in rows))
    markers = "osD^vP*Xh"
    for i, fam in enumerate(families):
        pts = [r for r in rows if r["family"] == fam]
        for a, key, xlabel in ((ax[0], "label_lnacc", "label leakage: LnAcc of the strongest label attack"),
                               (ax[1], "psnr", "image leakage: PSNR of the strongest inversion (dB)")):
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
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{title}: privacy-utility frontier across defenses (mean, 95% t-interval over seeds; "
                 "top-left is best)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
