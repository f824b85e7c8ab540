"""Leakage across training: accuracy vs round beside leakage vs round, a table per attacked round, and the
best label restoration and reconstruction at each stage (early, midway, late).

The update a client sends in round ``r`` is computed from the global model after round ``r - 1``: that model's
test accuracy is what "the model attacked in round r" scored.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from fedsim.lab import plots
from fedsim.lab.report.common import (cfg, counts, e, figure, fmt, integer, mean, methods_in_order, num, ok, pct,
                                      ranked_inversions, table)
from fedsim.lab.report.data import RunData
from fedsim.lab.report.inversions import grid_figure
from fedsim.lab.report.labels import restored_chips, score_span, true_chips
from fedsim.core.rows import LabelRow

MAX_STAGES = 6


def attacked_rounds(data: RunData) -> list[int]:
    return sorted({r for r in (integer(x.round) for x in data.attacks if ok(x)) if r is not None})


def stages(rounds: Sequence[int], k: int = MAX_STAGES) -> list[int]:
    """At most ``k`` attacked rounds spread over training: always the first and the last."""
    if len(rounds) <= k:
        return list(rounds)
    picks = {rounds[round(i * (len(rounds) - 1) / (k - 1))] for i in range(k)}
    return sorted(picks)


def model_accuracy(data: RunData) -> dict[int, float]:
    """Test accuracy of the global model after each round (round 0 = the initial model)."""
    out = {}
    for u in data.utility:
        r, a = integer(u.round), num(u.test_accuracy)
        if r is not None and a is not None:
            out[r] = a
    return out


def by_round(data: RunData) -> tuple[list[str], list[str], dict[tuple[int | None, str, str], list]]:
    """Label methods, inversion methods (config order first) and the successful attack rows grouped by
    (round, method, kind)."""
    by: dict[tuple[int | None, str, str], list] = defaultdict(list)
    for r in data.attacks:
        if ok(r):
            by[(integer(r.round), str(r.method), r.KIND)].append(r)
    return (methods_in_order(data.labels, cfg(data, "attack", "label_methods")),
            methods_in_order(data.inversions, cfg(data, "attack", "inversion")), by)


def _per_round_table(data: RunData, rounds: list[int]) -> str:
    acc = model_accuracy(data)
    lab_methods, inv_methods, by = by_round(data)
    rows = []
    for rnd in rounds:
        cells = [f'<td class="n">{rnd}</td><td class="n">{pct(acc.get(rnd - 1))}</td>']
        for m in lab_methods:
            rs = by.get((rnd, m, "label"), [])
            cells.append(f'<td class="n">{pct(mean(x.label_lnacc for x in rs))} · '
                         f'{pct(mean(x.label_instacc for x in rs))}</td>')
        for m in inv_methods:
            rs = by.get((rnd, m, "inversion"), [])
            cells.append(f'<td class="n">{fmt(mean(x.psnr for x in rs), ".1f")} dB · '
                         f'{fmt(mean(x.ssim for x in rs), ".2f")}</td>')
        rows.append(f'<tr>{"".join(cells)}</tr>')
    head = ["round", "model acc."] + lab_methods + inv_methods
    return table(head, rows, [True] * len(head))


def _best_label(rows: list[LabelRow]) -> LabelRow | None:
    scored = [r for r in rows if ok(r) and num(r.label_instacc) is not None]
    return max(scored, key=lambda r: (num(r.label_instacc), num(r.label_lnacc) or 0.0), default=None)


def _stage_card(data: RunData, rnd: int, acc: dict[int, float]) -> str:
    lab = _best_label([r for r in data.labels if integer(r.round) == rnd])
    inv = next(iter(ranked_inversions([r for r in data.inversions if integer(r.round) == rnd])), None)
    parts = [f'<h4>Round {rnd} <span class="muted">· model accuracy {pct(acc.get(rnd - 1))}</span></h4>']
    if lab is not None:
        true = counts(lab.true_counts)
        rest = counts(lab.restored_counts)
        parts.append(f'<p><b>Best label restoration</b>: {e(lab.method)}, client {e(lab.client)} '
                     f'{score_span(lab.label_instacc)}<br><span class="muted">true</span> {true_chips(true)}<br>'
                     f'<span class="muted">restored</span> '
                     f'{restored_chips(true, rest) if rest is not None else "–"}</p>')
    if inv is not None:
        parts.append(f'<div class="gallery">{grid_figure(data, inv)}</div>')
    return f'<div class="card stage">{"".join(parts)}</div>'


def _best_means(data: RunData, rnd: int) -> tuple[tuple[str, float] | None, tuple[str, float] | None]:
    """(label method, mean labels recovered) and (inversion method, mean PSNR) of the strongest method in a
    round."""
    lab: dict[str, list] = defaultdict(list)
    inv: dict[str, list] = defaultdict(list)
    for r in data.labels:
        if ok(r) and integer(r.round) == rnd:
            lab[str(r.method)].append(r.label_instacc)
    for r in data.inversions:
        if ok(r) and integer(r.round) == rnd:
            inv[str(r.method)].append(r.psnr)
    best = []
    for groups in (lab, inv):
        means = [(m, mean(v)) for m, v in groups.items() if mean(v) is not None]
        best.append(max(means, key=lambda t: t[1], default=None))
    return best[0], best[1]


def story(data: RunData, rounds: list[int]) -> str:
    """One sentence: the model's accuracy and the strongest attacks' leakage at the first and last stage."""
    first, last = rounds[0], rounds[-1]
    acc = model_accuracy(data)
    (lab0, inv0), (lab1, inv1) = _best_means(data, first), _best_means(data, last)
    parts = [f"The clients attacked in round {first} trained from a model with {pct(acc.get(first - 1))} test "
             f"accuracy; in round {last}, from one with {pct(acc.get(last - 1))}."]
    if lab0 and lab1:
        parts.append(f"The strongest label restoration recovered {pct(lab0[1])} of the batch labels ({e(lab0[0])}) "
                     f"in round {first} and {pct(lab1[1])} ({e(lab1[0])}) in round {last}.")
    if inv0 and inv1:
        parts.append(f"Image reconstruction went from {inv0[1]:.1f} dB ({e(inv0[0])}) to {inv1[1]:.1f} dB "
                     f"({e(inv1[0])}) PSNR.")
    return f'<p class="story">{" ".join(parts)}</p>'


def timeline(data: RunData) -> str:
    rounds = attacked_rounds(data)
    if len(rounds) < 2:
        return ('<p class="muted">Attacks ran in fewer than two rounds, so there is no timeline. Attack a fixed '
                'sample of clients in several rounds (<code>attack.rounds = "1,10,20"</code>, '
                '<code>attack.clients = "0,1"</code>) to see how leakage changes as the model trains.</p>')
    acc = model_accuracy(data)
    lab = [r for r in data.labels if ok(r)]
    inv = [r for r in data.inversions if ok(r)]
    png = plots.timeline_plot(data.utility, lab, inv)
    cards = "".join(_stage_card(data, r, acc) for r in stages(rounds))
    return (story(data, rounds)
            + figure(png, "test accuracy, label restoration and reconstruction PSNR against round")
            + '<h3>Per attacked round</h3><p class="lead">Means over the clients attacked in that round. "Model '
              'acc." is the accuracy of the global model the clients trained from (after the previous round). '
              'Label methods: <b>counts exact · labels recovered</b> (LnAcc, the share of classes whose count is '
              'right; and the share of the batch\'s labels recovered). Image methods: <b>PSNR · SSIM</b>.</p>'
            + _per_round_table(data, rounds)
            + f'<h3>Best at each stage</h3><div class="stages">{cards}</div>')
