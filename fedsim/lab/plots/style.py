"""The report's figure style: one palette (shared with the CSS of ``fedsim.lab.report.style``), matplotlib's rc
settings, the Agg backend (set on import) and the PNG writer every figure of ``fedsim.lab.plots`` uses."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg", force=True)
import matplotlib.pyplot as plt  # noqa: E402

from fedsim.core.rows import finite_float  # noqa: E402

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


