"""Label restoration per client and round: the labels truly in each attacked batch beside what every method
restored, as chips coloured by hit / wrong count / wrong class / missed."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fedsim.lab.report.common import MAX_LABEL_ROWS, cfg, counts, e, integer, methods_in_order, num, ok, or_q
from fedsim.lab.report.data import RunData
from fedsim.core.rows import LabelRow

LEGEND = ('<p class="legend">Read <span class="chip t">3×0</span> as “three images of class 0”. Restored '
          'counts: <span class="chip hit">right count</span> <span class="chip off">class right, count '
          'wrong</span> <span class="chip bad">class not in the batch</span> <span class="chip miss">missed'
          '</span>. The percentage is the share of the batch\'s labels recovered.</p>')


def restored_chips(true: list[int] | None, rest: list[int]) -> str:
    chips = []
    for c in range(max(len(rest), len(true or []))):
        r = rest[c] if c < len(rest) else 0
        t = true[c] if true is not None and c < len(true) else None
        if r > 0:
            cls = "t" if t is None else "hit" if r == t else "off" if t > 0 else "bad"
            chips.append(f'<span class="chip {cls}">{r}×{c}</span>')
        elif t:
            chips.append(f'<span class="chip miss" title="missed">{t}×{c}</span>')
    return "".join(chips) or '<span class="muted">none</span>'


def true_chips(true: list[int] | None) -> str:
    if not true:
        return '<span class="muted">unknown</span>'
    return "".join(f'<span class="chip t">{n}×{c}</span>' for c, n in enumerate(true) if n > 0)


def score_span(v: Any) -> str:
    f = num(v)
    if f is None:
        return ""
    cls = "hi" if f >= 0.9 else "mid" if f >= 0.5 else "lo"
    return f'<span class="score {cls}">{100 * f:.0f}%</span>'


def label_cell(r: LabelRow | None, true: list[int] | None) -> str:
    if r is None:
        return '<td class="muted">–</td>'
    if not ok(r):
        return f'<td><span class="chip bad">failed</span> <span class="err">{e(str(r.error or "")[:120])}</span></td>'
    rest = counts(r.restored_counts)
    chips = restored_chips(true, rest) if rest is not None else '<span class="muted">no counts</span>'
    if r.presence_only:
        chips += '<span class="muted" title="this method only says which classes are present"> (classes only)</span>'
    if r.score_error:
        chips += f'<div class="err">not scored: {e(str(r.score_error)[:120])}</div>'
    return f"<td>{chips}{score_span(r.label_instacc)}</td>"


def _setting_short(r: LabelRow) -> str:
    parts = []
    if r.algorithm:
        parts.append(str(r.algorithm))
    if integer(r.batch_size) is not None:
        parts.append(f"B={integer(r.batch_size)}")
    if integer(r.local_steps) is not None:
        parts.append(f"T={integer(r.local_steps)}")
    return " ".join(parts)


def label_table(data: RunData) -> str:
    if not data.labels:
        return '<p class="muted">No label restoration rows in metrics.jsonl.</p>'
    methods = methods_in_order(data.labels, cfg(data, "attack", "label_methods"))
    groups: dict[tuple, dict[str, LabelRow]] = defaultdict(dict)
    for r in data.labels:
        groups[(integer(r.round), integer(r.client))][str(r.method)] = r
    keys = sorted(groups, key=lambda k: (k[0] is None, k[0] or 0, k[1] is None, k[1] or 0))
    body = []
    for key in keys[:MAX_LABEL_ROWS]:
        by_m = groups[key]
        true = next((t for t in (counts(r.true_counts) for r in by_m.values()) if t), None)
        any_row = next(iter(by_m.values()))
        cells = "".join(label_cell(by_m.get(m), true) for m in methods)
        body.append(f'<tr><td class="n">{or_q(key[0])}</td><td class="n">{or_q(key[1])}</td>'
                    f'<td class="n">{or_q(integer(any_row.num_samples))}</td><td class="muted" '
                    f'style="white-space:nowrap">{e(_setting_short(any_row))}</td><td>{true_chips(true)}</td>'
                    f'{cells}</tr>')
    more = ""
    if len(keys) > MAX_LABEL_ROWS:
        more = f'<p class="muted">Showing the first {MAX_LABEL_ROWS} of {len(keys)} attacked updates.</p>'
    head = "".join(f"<th>{e(m)}</th>" for m in methods)
    return (f'{LEGEND}<div class="tablewrap"><table><thead><tr><th class="n">round</th><th class="n">client</th>'
            f'<th class="n">K</th><th>setting</th><th>true labels</th>{head}</tr></thead><tbody>{"".join(body)}'
            f'</tbody></table></div>{more}')
