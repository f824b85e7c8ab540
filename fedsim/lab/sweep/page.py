"""``sweep.html``: the table of sweep points (words, intervals, winning attacks, epsilon), the figures, and a
link to every run's own ``report.html``."""

from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path

from fedsim.lab.sweep.summary import point_label


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


def _links(row: dict, out: Path) -> str:
    links = []
    for s in row.get("runs", []):
        report = Path(s["run"]) / "report.html"
        rel = os.path.relpath(report, out)
        links.append(f'<a href="{html.escape(rel)}">seed {s["seed"]}</a>')
    return " ".join(links)


def write_html(rows: list[dict], title: str, out: Path, figures: list[Path]) -> Path:
    head = ("setting", "test accuracy", "held-out half", "best label attack", "LnAcc", "LeAcc", "best inversion", "PSNR (dB)",
            "SSIM", "epsilon (delta)", "runs")
    body = []
    for r in rows:
        eps = "-" if r.get("epsilon") is None else f"{_num(r['epsilon'], 2)} ({_num(r.get('delta'), 7)})"
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in (
            html.escape(point_label(r)), fmt_ci(r, "test_accuracy"), fmt_ci(r, "heldout_accuracy"),
            _num(r.get("label_best")),
            fmt_ci(r, "label_lnacc"), fmt_ci(r, "label_leacc"), _num(r.get("inversion_best")),
            fmt_ci(r, "psnr", 1), fmt_ci(r, "ssim"), eps, _links(r, out))) + "</tr>")
    imgs = "".join(f'<p><img alt="{f.name}" src="data:image/png;base64,{base64.b64encode(f.read_bytes()).decode()}">'
                   "</p>" for f in figures if f.exists())
    seeds = max((r.get("seeds_run", 1) for r in rows), default=1)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>sweep {html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:3px 8px}"
            "table{border-collapse:collapse}</style></head><body>"
            f"<h1>Sweep {html.escape(title)}</h1>"
            f"<p>One federation per setting and seed ({seeds} seeds). Mean and 95% Student-t interval over seeds "
            "[low, high]. Leakage: the strongest attack per setting (the method with the best mean over seeds; "
            "every method's mean is in sweep.jsonl). Epsilon: Opacus' RDP accountant (fedsim/accounting.py); "
            "inf = no noise. Held-out half: accuracy on the even-indexed half of the test split, which no tuning "
            "reads (learning rates and clip norms are picked on the odd half).</p>"
            f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(body)}</table>{imgs}</body></html>")
    path = out / "sweep.html"
    path.write_text(page)
    return path
