"""Figures for the run report, drawn with matplotlib's Agg backend and returned as PNG bytes.

Every function takes typed rows (``fedsim.core.rows``: ``UtilityRow``, ``LabelRow``, ``InversionRow``, as
:class:`fedsim.core.runfolder.RunFolder` reads them), never touches the run folder, and returns ``bytes`` (a PNG) or
``None`` when there is nothing to draw. Field values are not trusted (a hand-edited file may hold a string where
a number belongs): non-numeric values are left out. The report embeds the PNGs as data URIs.
"""

from __future__ import annotations

import functools
import io
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from fedsim.core.rows import InversionRow, LabelRow, UtilityRow, finite_float  # noqa: E402

# One palette for the page (also used by the CSS in fedsim.lab.report.style).
INK = "#1f2933"
MUTED = "#616e7c"
GRID = "#e4e7eb"
BLUE = "#2563eb"
ORANGE = "#d97706"
RED = "#c2410c"
GREEN = "#15803d"
PURPLE = "#7c3aed"
SERIES = ["#2563eb", "#d97706", "#15803d", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#9333ea", "#b91c1c"]

DPI = 144

_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.edgecolor": "#9aa5b1",
    "axes.labelcolor": INK,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlecolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": False,
    "legend.fontsize": 8,
}


def _png(fig, tight_bbox: bool = False) -> bytes:
    buf = io.BytesIO()
    if not tight_bbox:
        fig.tight_layout()  # one draw instead of the two that bbox_inches="tight" costs
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight" if tight_bbox else None, facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def _int_like(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and finite_float(v) is not None


def _get(row: Any, key: str) -> Any:
    """A field of a typed row (``None`` when it has no such field)."""
    return getattr(row, key, None)


# ------------------------------------------------------------------------------------------------ threat model
@functools.lru_cache(maxsize=1)
def threat_model_diagram() -> bytes:
    """Clients -> updates -> honest-but-curious server (aggregates AND intercepts) -> attacks (cached)."""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(10, 4.1))
        ax.set_xlim(0, 100)
        ax.set_ylim(-1, 41)
        ax.axis("off")

        def box(x, y, w, h, text, fc, ec, size=9, weight="normal", color=INK):
            ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.4,rounding_size=1.2",
                                        fc=fc, ec=ec, lw=1.4))
            ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight,
                    color=color, linespacing=1.35)

        def arrow(p, q, color=MUTED, style="-|>", lw=1.4, ls="-", rad=0.0):
            ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=13, color=color, lw=lw,
                                         linestyle=ls, connectionstyle=f"arc3,rad={rad}"))

        # clients (private data stays here)
        ax.text(9, 39.5, "CLIENTS (data stays here)", ha="center", fontsize=8, color=MUTED, weight="bold")
        for i, y in enumerate((28, 16.5, 5)):
            box(1.5, y, 15, 7.5, f"client {i}\nprivate images\n+ labels", "#eff6ff", BLUE, size=8)
        # updates converge on the server
        for y in (31.75, 20.25, 8.75):
            arrow((17.6, y), (29.6, 16.0 + (y - 20.25) * 0.15), color=BLUE)
        ax.text(23.5, 35.0, "model updates\n(gradients\nor weights)", ha="center", va="center", fontsize=7.5,
                color=BLUE)
        # global model back to the clients
        arrow((29.8, 3.2), (17.0, 4.6), color="#9aa5b1", ls="--", rad=-0.1)
        ax.text(23.5, 0.2, "new global model", fontsize=7, color=MUTED, ha="center")

        # server
        ax.add_patch(FancyBboxPatch((30.5, 1), 26, 35.5, boxstyle="round,pad=0.4,rounding_size=1.5",
                                    fc="#fff7ed", ec=ORANGE, lw=1.6))
        ax.text(43.5, 34.0, "SERVER", ha="center", fontsize=9, weight="bold", color=INK)
        ax.text(43.5, 31.8, "honest-but-curious: runs the protocol\ncorrectly, but also looks",
                ha="center", va="top", fontsize=7.5, color=MUTED, linespacing=1.3)
        box(33.5, 21, 20.5, 5.5, "intercepts: keeps a copy\nof every single update", "#ffedd5", RED, size=7.5,
            weight="bold", color=RED)
        box(33.5, 5.5, 20.5, 5.5, "aggregates\n(FedAvg: its normal job)", "white", "#9aa5b1", size=7.5)
        arrow((31.4, 16.5), (37.0, 20.6), color=RED, rad=-0.2)
        arrow((31.4, 15.5), (37.0, 11.4), color="#9aa5b1", rad=0.2)
        ax.text(46.0, 15.6, "the same update feeds both", ha="center", fontsize=7, color=MUTED, style="italic")

        # attack chain
        ax.text(78, 39.5, "WHAT THE SERVER CAN DO WITH ONE UPDATE", ha="center", fontsize=8, color=MUTED,
                weight="bold")
        box(61, 26, 15, 9, "fake gradient\nweight change \u00f7 lr\n(FedSGD: exact)", "#faf5ff", PURPLE,
            size=7.5)
        box(61, 5, 15, 9, "label restoration\nwhich classes, how\nmany of each", "#faf5ff", PURPLE, size=7.5)
        box(82, 15, 16.5, 11, "image\nreconstruction\n(gradient inversion)", "#fef2f2", RED, size=8,
            weight="bold", color=RED)
        arrow((54.6, 24.5), (60.6, 29.5), color=RED, rad=-0.1)
        arrow((68.5, 25.7), (68.5, 14.4), color=PURPLE)
        arrow((76.4, 9.5), (81.6, 17), color=PURPLE, rad=0.1)
        arrow((76.4, 30.5), (81.6, 24), color=PURPLE, rad=-0.1)
        ax.text(90.2, 12.5, "scored against the\nclient's true batch:\nPSNR / SSIM", ha="center", va="top",
                fontsize=7, color=MUTED)
        return _png(fig, tight_bbox=True)


# ------------------------------------------------------------------------------------------------ utility
def _utility_points(rows: Sequence[UtilityRow]) -> list[tuple[float, float | None, float | None]]:
    return sorted((float(r.round), finite_float(r.test_accuracy), finite_float(r.test_loss))
                  for r in rows if _int_like(_get(r, "round")))


def utility_plot(rows: Sequence[UtilityRow]) -> bytes | None:
    """Test accuracy (left axis) and test loss (right axis) per round."""
    pts = _utility_points(rows)
    if not pts:
        return None
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(7.5, 3.0))
        xs = [p[0] for p in pts]
        acc = [(x, a) for x, a, _ in pts if a is not None]
        loss = [(x, l) for x, _, l in pts if l is not None]
        h = []
        if acc:
            h += ax.plot([p[0] for p in acc], [p[1] for p in acc], "-o", color=BLUE, ms=4, label="test accuracy")
            ax.set_ylim(0, 1.02)
        ax.set_ylabel("test accuracy")
        ax.set_xlabel("round (0 = initial model)")
        if loss:
            ax2 = ax.twinx()
            ax2.grid(False)
            ax2.spines["right"].set_visible(True)
            h += ax2.plot([p[0] for p in loss], [p[1] for p in loss], "--s", color=ORANGE, ms=3.5,
                          label="test loss")
            ax2.set_ylabel("test loss", color=ORANGE)
            ax2.tick_params(axis="y", colors=ORANGE)
            ax2.set_ylim(bottom=0)
        if len(set(xs)) <= 20:
            ax.set_xticks(sorted(set(xs)))
        ax.legend(h, [x.get_label() for x in h], loc="center right")
        ax.set_title("Does the federation learn? (utility)", loc="left")
        return _png(fig)


# ------------------------------------------------------------------------------------------------ leakage
def _grouped(rows: Iterable[Any], x_key: str, y_key: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        x, y = _get(r, x_key), finite_float(_get(r, y_key))
        if _int_like(x) and y is not None:
            method = _get(r, "method")
            out["?" if method is None else str(method)].append((float(x), y))
    return out


MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">"]


def _series(ax, groups: Mapping[str, list[tuple[float, float]]], log_x: bool = False) -> None:
    """Dots per attack and a mean line per method; methods are dodged sideways a little so that equal
    means (e.g. several methods at 100%) stay visible instead of hiding behind each other."""
    xs_all = sorted({p[0] for pts in groups.values() for p in pts})
    n = len(groups)
    if log_x:
        step = 2 ** 0.06
    else:
        gaps = [b - a for a, b in zip(xs_all, xs_all[1:])]
        step = 0.035 * (min(gaps) if gaps else 1.0)

    def dodge(x: float, i: int) -> float:
        k = i - (n - 1) / 2
        return x * step ** k if log_x else x + k * step

    for i, (method, pts) in enumerate(sorted(groups.items())):
        color = SERIES[i % len(SERIES)]
        ax.scatter([dodge(p[0], i) for p in pts], [p[1] for p in pts], s=16, color=color, alpha=0.45, lw=0)
        by_x: dict[float, list[float]] = defaultdict(list)
        for x, y in pts:
            by_x[x].append(y)
        mx = sorted(by_x)
        ax.plot([dodge(x, i) for x in mx], [sum(by_x[x]) / len(by_x[x]) for x in mx], "-",
                marker=MARKERS[i % len(MARKERS)], color=color, ms=5, lw=1.8, label=f"{method} (mean)")
    if log_x:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs_all)
        ax.set_xticklabels([f"{t:g}" for t in xs_all])
        ax.minorticks_off()


def leakage_plot(label_rows: Sequence[LabelRow], inversion_rows: Sequence[InversionRow], x_key: str,
                 x_label: str, title: str, label_metric: str = "label_instacc") -> bytes | None:
    """Label accuracy (per label method) and PSNR (per inversion method) against ``x_key``.

    Light dots are single attacks, lines the mean per x value. Returns None if neither panel has points.
    """
    lab = _grouped(label_rows, x_key, label_metric)
    inv = _grouped(inversion_rows, x_key, "psnr")
    ident = _ident_groups(inversion_rows, x_key)
    panels = [p for p in (("labels", lab), ("psnr", inv), ("ident", ident)) if p[1]]
    if not panels:
        return None
    log_x = x_key in ("batch_size", "local_steps") and all(
        x > 0 for g in (lab, inv) for pts in g.values() for x, _ in pts)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 0.6, 3.0), squeeze=False)
        for ax, (kind, groups) in zip(axes[0], panels):
            _series(ax, groups, log_x=log_x)
            ax.set_xlabel(x_label)
            if kind == "labels":
                ax.set_ylim(-0.02, 1.05)
                ax.set_ylabel("labels recovered (share)")
                ax.set_title("Label restoration", loc="left")
            elif kind == "psnr":
                ax.set_ylabel("PSNR (dB, higher = closer)")
                ax.set_title("Image reconstruction", loc="left")
            else:
                _ident_axes(ax, inversion_rows)
            if x_key == "round" and not log_x:
                xs = sorted({p[0] for pts in groups.values() for p in pts})
                if len(xs) <= 20:
                    ax.set_xticks(xs)
                    ax.set_xticklabels([f"{x:g}" for x in xs])
            ax.legend(loc="best")
        fig.suptitle(title, x=0.01, ha="left", fontsize=10, weight="bold", color=INK)
        fig.tight_layout()
        return _png(fig)


IDENT_SERIES = (("ident_reid_acc", "ident_reid_chance", "re-identified", ":"),
                ("ident_class_acc", "ident_class_chance", "class named", "-."))


def _ident_groups(inversion_rows: Sequence[InversionRow], x_key: str) -> dict[str, list[tuple[float, float]]]:
    """Identifiability points per "method · measure" (re-identified, class named) against ``x_key``."""
    out: dict[str, list[tuple[float, float]]] = {}
    for key, _, name, _ in IDENT_SERIES:
        for method, pts in _grouped(inversion_rows, x_key, key).items():
            out[f"{method} · {name}"] = pts
    return out


def _ident_axes(ax, inversion_rows: Sequence[InversionRow]) -> None:
    """Axis, title and the chance level of each identifiability measure (its mean over the rows), in place of a
    fixed "recognisable" PSNR line."""
    for key, chance_key, name, ls in IDENT_SERIES:
        chances = [c for c in (finite_float(_get(r, chance_key)) for r in inversion_rows
                               if finite_float(_get(r, key)) is not None) if c is not None]
        if chances:
            level = sum(chances) / len(chances)
            ax.axhline(level, color=MUTED, ls=ls, lw=1.2, label=f"chance: {name} ({level:.2g})")
    ax.set_ylim(-0.02, 1.05)
    ax.set_ylabel("share of the batch")
    ax.set_title("Identifiability", loc="left")


def varies(rows: Iterable[Any], key: str) -> bool:
    """True when the rows carry at least two distinct numeric values of ``key``."""
    return len({float(_get(r, key)) for r in rows if _int_like(_get(r, key))}) >= 2


# ------------------------------------------------------------------------------------------------ timeline
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


# ------------------------------------------------------------------------------------------------ privacy
def _epsilon_points(rows: Sequence[Any]) -> dict[str, list[tuple[float, float]]]:
    """Finite (round, epsilon) per setting "mechanism (accountant, δ)"; an infinite epsilon has no point."""
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        x, eps, delta = _get(r, "round"), finite_float(_get(r, "epsilon")), finite_float(_get(r, "delta"))
        if _int_like(x) and eps is not None:
            name = f"{_get(r, 'mechanism') or 'dp'} ({_get(r, 'accountant')}, δ = {delta:.0e})" if delta else \
                str(_get(r, "mechanism") or "dp")
            out[name].append((float(x), eps))
    return {k: sorted(v) for k, v in out.items()}


def epsilon_plot(rows: Sequence[Any]) -> bytes | None:
    """Epsilon spent after each round, one line per DP setting (``PrivacyRow``); None without a finite one."""
    groups = _epsilon_points(rows)
    if not groups:
        return None
    ys = [y for pts in groups.values() for _, y in pts]
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(7.5, 2.8))
        for i, (name, pts) in enumerate(groups.items()):
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", marker="o" if len(pts) <= 30 else None,
                    ms=3.5, color=SERIES[i % len(SERIES)], label=name)
        if min(ys) > 0 and max(ys) / min(ys) > 100:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlabel("round")
        ax.set_ylabel("ε spent (lower = stronger)")
        ax.set_title("Privacy spent over training", loc="left")
        ax.legend(loc="best")
        return _png(fig)
