"""Numbers as the terminal shows them: three significant digits (``acc=0.926``, ``chance 0.00075``,
``psnr=14.8``), whole numbers from 1000 up; the JSON files and pages keep full precision."""

from __future__ import annotations

import math
from typing import Any


def num(value: Any) -> str:
    """``0.9263333333333333`` -> ``0.926``, ``0.0007500000937265801`` -> ``0.00075``, ``None`` -> ``-``; ints,
    bools and strings as they are."""
    if value is None:
        return "-"
    if isinstance(value, (bool, int, str)):
        return str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def sweep_line(row: dict[str, Any]) -> str:
    """One summary row of ``fedsim sweep`` (``sweep.jsonl``'s point) in one line, numbers rounded."""
    from fedsim.lab.sweep import point_label
    from fedsim.lab.sweep.summary import ceiling_line

    g = row.get
    ceiling = ceiling_line(row)
    return (f"{point_label(row)}: acc={num(g('test_accuracy'))} {g('label_best')} lnacc={num(g('label_lnacc'))} "
            f"attacker's pick {g('inversion_best')} psnr={num(g('psnr'))} reid={num(g('ident_reid_acc'))} "
            f"(chance {num(g('ident_reid_chance'))}; oracle psnr={num(g('psnr_oracle'))}) "
            f"({g('seeds_run')} seeds)" + (f"; {ceiling}" if ceiling else ""))
