"""Per-round charts of a run: utility (accuracy, loss), leakage by round or by a swept key with the
identifiability chance lines, and the privacy budget spent."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

from fedsim.core.rows import InversionRow, LabelRow, UtilityRow, finite_float
from fedsim.lab.plots.style import INK, MUTED, BLUE, ORANGE, SERIES, _RC, _png, _int_like, _get, plt


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
