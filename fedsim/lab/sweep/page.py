"""``sweep.html`` in the run report's style (its stylesheet, :mod:`fedsim.lab.report.style`): the table of sweep
points (words, intervals, the attacker's pick and the labelled oracle upper bound, identifiability with chance,
epsilon), the figures (each at most the page's width), a
reconstruction strip per setting (:mod:`~.strips`) and a link to every run's own ``report.html``."""

from __future__ import annotations

import datetime as _dt
import html
import math
import os
from pathlib import Path

from fedsim.core.runfolder import RunFolder
from fedsim.lab.sweep.summary import point_label

EXTRA_CSS = """
.figure img { max-width: 100%; }
.strip { margin: 18px 0 26px; }
.strip h3 { margin: 0 0 8px; }
.strip .gallery { grid-template-columns: repeat(auto-fill, minmax(min(100%, 320px), 1fr)); }
td a { color: var(--blue); margin-right: 6px; }
"""

EXPLAIN = ("One federation per setting and seed ({seeds} seed{s}). Mean and 95% Student-t interval over seeds "
           "[low, high]. Leakage: the attacker's own pick, made without ground truth: per attacked update the "
           "reconstruction with the lowest criterion (the attack's own score; rows without one fall back to the "
           "first configured method, marked), and the label method the server acts on (the one whose labels the "
           "inversion used, else the first configured). Identifiability of that pick: re-identified = share of "
           "reconstructions whose nearest image in the client's own data is their source (chance 1 / pool size); "
           "class named = share a classifier trained on the public split names correctly (chance: the batch's "
           "majority-class share). Oracle: the best by ground truth (per update the highest PSNR; for labels the "
           "method with the best mean LnAcc), an upper bound no attacker can pick; its interval is not that of a "
           "method fixed in advance, since the pick itself reads the truth. Every method's mean is in sweep.jsonl. "
           "Epsilon: the accountant of each DP mechanism at δ; inf = no noise "
           "(no guarantee). Its scale, the DP bound: no attack that must single out its target among candidates "
           "(chance κ) succeeds more often than 1 - f(κ), f the mechanism's trade-off curve (Hayes et al. 2023; "
           "Kulynych et al. 2025); beside it the measured rate of the pipeline and of the ORACLE-PRIOR attack "
           "(ground truth: it knows the candidates and the other training examples), pooled over updates and "
           "seeds, with a 95% Clopper-Pearson interval. "
           "Held-out half: accuracy on the even-indexed half of the test split, which no tuning "
           "reads (learning rates and clip norms are picked on the odd half).")


def _num(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return "inf"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.3g}"
    return html.escape(str(v))


def fmt_ci(row: dict, key: str, digits: int = 3) -> str:
    ci = row.get(f"{key}_ci")
    text = _num(row.get(key), digits)
    return f"{text} [{_num(ci[0], digits)}, {_num(ci[1], digits)}]" if ci else text


def with_chance(row: dict, key: str) -> str:
    """``<key>_acc`` with its interval and the mean chance level ``<key>_chance`` ("-" when not scored)."""
    if row.get(f"{key}_acc") is None:
        return "-"
    return f"{fmt_ci(row, f'{key}_acc')} (chance {_num(row.get(f'{key}_chance'))})"


def picked(row: dict) -> str:
    """The method(s) the attacker picked (with counts when it picked more than one), marked when the pick fell
    back to the first configured method for want of a criterion."""
    counts = row.get("inversion_picks") or {}
    text = (", ".join(f"{html.escape(str(m))} ×{n}" for m, n in counts.items()) if len(counts) > 1
            else _num(row.get("inversion_best")))
    if row.get("inversion_pick_fallback"):
        text += ' <span class="muted">(no criterion recorded: first configured method)</span>'
    return text


def bound_cell(row: dict) -> str:
    """The pooled re-identification rates (pipeline, ORACLE-PRIOR) with their Clopper-Pearson intervals beside
    the DP bound on any attack (``fedsim.lab.sweep.bound``): "re-identified 0 % [0, 3 %] of 120, bound 14 %"."""
    lines = [html.escape(b["line"]) for b in (row.get("bound_reid"), row.get("bound_oracle")) if b]
    return "<br>".join(lines) if lines else "-"


def _links(row: dict, out: Path) -> str:
    links = []
    for s in row.get("runs", []):
        report = RunFolder(s["run"]).report
        rel = os.path.relpath(report, out)
        links.append(f'<a href="{html.escape(rel)}">seed {s["seed"]}</a>')
    return " ".join(links)


def _ci_below(row: dict, key: str, digits: int = 3, unit: str = "") -> str:
    """The mean, its interval on a line of its own (a narrow cell)."""
    ci = row.get(f"{key}_ci")
    text = _num(row.get(key), digits) + (unit if row.get(key) is not None else "")
    return text + (f'<span class="ci">[{_num(ci[0], digits)}, {_num(ci[1], digits)}]</span>' if ci else "")


def epsilon_cell(row: dict) -> str:
    """Epsilon with its meaning: the DP bound on any re-identification at the point's chance level where the runs
    recorded it (``bound_reid``, :mod:`fedsim.lab.sweep.bound`), else its delta."""
    eps = row.get("epsilon")
    if eps is None:
        return '- <span class="ci">no DP</span>'
    if not math.isfinite(eps):
        return 'inf <span class="ci">no noise: no guarantee</span>'
    bound = row.get("bound_reid") or row.get("bound_oracle") or {}
    if bound.get("bound") is not None:
        return (f'{_num(eps, 2)} <span class="ci">any attack ≤ {bound["bound"]:.0%} (chance '
                f'{bound.get("kappa") or 0:.1%})</span>')
    return f'{_num(eps, 2)} <span class="ci">δ {_num(row.get("delta"), 7)}</span>'


#: the columns that decide a setting, shown first and without scrolling; the rest behind a toggle
FIRST = ("setting", "test accuracy", "labels (acted on)", "attacker's pick · PSNR", "re-identified", "epsilon")


def _first_table(rows: list[dict]) -> str:
    from fedsim.lab.report.common import table

    body = []
    for r in rows:
        labels = (f'{_ci_below(r, "label_lnacc")}<span class="ci">LnAcc (counts exact), '
                  f'{_num(r.get("label_best"))}</span>' if r.get("label_lnacc") is not None else "-")
        psnr = _ci_below(r, "psnr", 1, " dB")
        reid = ("-" if r.get("ident_reid_acc") is None else
                f'{_num(r.get("ident_reid_acc"), 2)} <span class="ci">chance {_num(r.get("ident_reid_chance"))}'
                f'</span>')
        cells = (html.escape(str(r.get("label", point_label(r)))), _ci_below(r, "test_accuracy"), labels,
                 f"{picked(r)} · {psnr}", reid, epsilon_cell(r))
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return table(FIRST, body).replace("<table>", '<table class="fit">', 1)


def _table(rows: list[dict], out: Path) -> str:
    """The deciding columns (``FIRST``), then every column behind a toggle."""
    return (_first_table(rows) + '<details><summary>every column (intervals, oracle upper bounds, the DP bound, '
            'links to each run\'s report)</summary>' + _full_table(rows, out) + "</details>")


def _full_table(rows: list[dict], out: Path) -> str:
    from fedsim.lab.report.common import table

    head = ("setting", "test accuracy", "held-out half", "label attack (acted on)", "LnAcc", "LeAcc",
            "inversion (attacker's pick)", "PSNR (dB)", "SSIM", "re-identified (chance)", "class named (chance)",
            "oracle best LnAcc (upper bound)", "oracle best PSNR (dB, upper bound)", "epsilon (delta)",
            "re-identified vs DP bound (95% Clopper-Pearson)", "runs")
    numeric = (False, True, True, False, True, True, False, True, True, True, True, True, True, True, False, False)
    body = []
    for r in rows:
        eps = "-" if r.get("epsilon") is None else f"{_num(r['epsilon'], 2)} ({_num(r.get('delta'), 7)})"
        oracle_lab = f"{fmt_ci(r, 'label_lnacc_oracle')} {_num(r.get('label_oracle'))}" if r.get("label_oracle") \
            else "-"
        cells = (html.escape(point_label(r)), fmt_ci(r, "test_accuracy"), fmt_ci(r, "heldout_accuracy"),
                 _num(r.get("label_best")), fmt_ci(r, "label_lnacc"), fmt_ci(r, "label_leacc"), picked(r),
                 fmt_ci(r, "psnr", 1), fmt_ci(r, "ssim"), with_chance(r, "ident_reid"),
                 with_chance(r, "ident_class"), oracle_lab, fmt_ci(r, "psnr_oracle", 1), eps, bound_cell(r),
                 _links(r, out))
        body.append("<tr>" + "".join(f'<td{" class=n" if n else ""}>{c}</td>' for c, n in zip(cells, numeric))
                    + "</tr>")
    return table(head, body, numeric)


FIGURE_TITLES = {"sweep_settings.png": "Leakage and utility per setting",
                 "sweep_epsilon.png": "Accuracy and leakage against epsilon",
                 "sweep_frontier.png": "Privacy-utility frontier",
                 "sweep_bound.png": "Measured re-identification vs the DP bound"}


def _ceilings(rows: list[dict]) -> str:
    """The exact-recovery ceiling of every point where an exact attack (spear, spear++, analytic-fc) was scored
    (:func:`fedsim.lab.sweep.summary.ceiling_line`): where it is whole, no prior-based attack can do better."""
    from fedsim.lab.report.common import e
    from fedsim.lab.sweep.summary import ceiling_line

    lines = [(str(r.get("label", point_label(r))), ceiling_line(r)) for r in rows]
    return "".join(f'<p class="ceiling"><b>{e(label)}</b>: {e(line)}</p>' for label, line in lines if line)


def write_html(rows: list[dict], title: str, out: Path, figures: list[Path]) -> Path:
    from fedsim.lab.report.common import data_uri, e, section
    from fedsim.lab.report.style import CSS
    from fedsim.lab.sweep.strips import strip_html

    seeds = max((r.get("seeds_run", 1) for r in rows), default=1)
    parts = [section("points", 1, "Sweep points", _ceilings(rows) + _table(rows, out),
                     EXPLAIN.format(seeds=seeds, s="s" if seeds != 1 else ""))]
    for f in figures:
        if f is not None and f.exists():
            img = f'<div class="figure"><img alt="{e(f.name)}" src="{data_uri(f.read_bytes())}"></div>'
            parts.append(section(f.stem, len(parts) + 1, FIGURE_TITLES.get(f.name, f.stem), img))
    parts.append(section("reconstructions", len(parts) + 1, "Reconstructions per setting",
                         "".join(strip_html(r, out) for r in rows),
                         "The first attacked update of each setting (its first seed), as every inversion method "
                         "rebuilt it, the attacker's pick (lowest criterion) first: top row the client's real "
                         "images, bottom row the reconstruction. The update is picked by its place in the run, not "
                         "by its score."))
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fedsim sweep · {e(title)}</title>
<style>{CSS}{EXTRA_CSS}</style></head>
<body>
<header class="top"><div class="inner">
<div class="kicker">fedsim · defense sweep</div>
<h1>Sweep {e(title)}</h1>
<p>{len(rows)} setting{"s" if len(rows) != 1 else ""} × up to {seeds} seed{"s" if seeds != 1 else ""}: what the
attacker's own pick recovers under each defense setting, and what the defense costs in accuracy.</p>
</div></header>
<main>
{"".join(parts)}
<footer>Generated {now} by <code>fedsim sweep</code> / <code>fedsim report</code> from <code>{e(out)}</code>
(sweep.jsonl holds every number). Self-contained: no network access needed to view this file.</footer>
</main></body></html>
"""
    path = out / "sweep.html"
    tmp = out / ".sweep.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
