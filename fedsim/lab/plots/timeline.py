"""The leakage-across-training figure: accuracy, label leakage, PSNR and identifiability per attacked round."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from fedsim.core.rows import InversionRow, LabelRow, UtilityRow
from fedsim.lab.plots.style import INK, BLUE, RED, SERIES, _RC, _png, plt
from fedsim.lab.plots.charts import _utility_points, _grouped, MARKERS, _series, _ident_groups, _ident_axes


def _mean_by_x(pts: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    by_x: dict[float, list[float]] = defaultdict(list)
    for x, y in pts:
        by_x[x].append(y)
    xs = sorted(by_x)
    return xs, [sum(by_x[x]) / len(by_x[x]) for x in xs]


def _accuracy_panel(ax, utility: Sequence[UtilityRow], attacked: Sequence[float]) -> None:
    acc = [(x, a) for x, a, _ in _utility_points(utility) if a is not None]
    if acc:
        ax.plot([p[0] for p in acc], [p[1] for p in acc], "-", color=BLUE, lw=1.8, label="test accuracy")
    for i, x in enumerate(attacked):
        ax.axvline(x - 1, color=RED, lw=0.9, ls=":", label="attacked model" if i == 0 else None)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_title("Utility: the model learns", loc="left")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)


def _label_panel(ax, label_rows: Sequence[LabelRow]) -> None:
    inst = _grouped(label_rows, "round", "label_instacc")
    exact = _grouped(label_rows, "round", "label_lnacc")
    all_x = [x for pts in inst.values() for x, _ in pts]
    step = 0.012 * ((max(all_x) - min(all_x)) or 1.0)  # methods dodged sideways: equal means stay visible
    for i, method in enumerate(sorted(inst)):
        color = SERIES[i % len(SERIES)]
        shift = (i - (len(inst) - 1) / 2) * step
        xs, ys = _mean_by_x(inst[method])
        ax.plot([x + shift for x in xs], ys, "-", marker=MARKERS[i % len(MARKERS)], color=color, ms=5, lw=1.8,
                label=f"{method}")
        if method in exact:
            xs, ys = _mean_by_x(exact[method])
            ax.plot([x + shift for x in xs], ys, "--", color=color, lw=1.1, alpha=0.8)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("round attacked")
    ax.set_ylabel("share (mean over clients)")
    ax.set_title("Labels: recovered (solid), counts exact (dashed)", loc="left")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=min(3, len(inst)))


def _psnr_panel(ax, inversion_rows: Sequence[InversionRow]) -> None:
    _series(ax, _grouped(inversion_rows, "round", "psnr"))
    ax.set_xlabel("round attacked")
    ax.set_ylabel("PSNR (dB, higher = closer)")
    ax.set_title("Images: reconstruction quality", loc="left")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)


def _ident_panel(ax, inversion_rows: Sequence[InversionRow]) -> None:
    _series(ax, _ident_groups(inversion_rows, "round"))
    _ident_axes(ax, inversion_rows)
    ax.set_xlabel("round attacked")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)


def timeline_plot(utility: Sequence[UtilityRow], label_rows: Sequence[LabelRow],
                  inversion_rows: Sequence[InversionRow]) -> bytes | None:
    """Accuracy vs round beside label leakage, PSNR and identifiability (with chance) vs the round attacked.

    Dotted red lines on the accuracy panel mark the models that were attacked (the update of round r is
    computed from the model after round r - 1). Returns None when no attack row has a round.
    """
    lab_pts = _grouped(label_rows, "round", "label_instacc")
    inv_pts = _grouped(inversion_rows, "round", "psnr")
    attacked = sorted({x for g in (lab_pts, inv_pts) for pts in g.values() for x, _ in pts})
    if not attacked:
        return None
    panels = [_accuracy_panel] + ([_label_panel] if lab_pts else []) + ([_psnr_panel] if inv_pts else [])
    panels += [_ident_panel] if _ident_groups(inversion_rows, "round") else []
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, len(panels), figsize=(4.1 * len(panels) + 0.4, 3.6), squeeze=False,
                                 sharex=True)
        for ax, panel in zip(axes[0], panels):
            if panel is _accuracy_panel:
                panel(ax, utility, attacked)
            elif panel is _label_panel:
                panel(ax, label_rows)
            elif panel is _ident_panel:
                panel(ax, inversion_rows)
            else:
                panel(ax, inversion_rows)
        fig.suptitle("Leakage across training", x=0.01, ha="left", fontsize=10, weight="bold", color=INK)
        fig.tight_layout()
        return _png(fig)


