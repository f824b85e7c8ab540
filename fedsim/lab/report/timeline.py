"""Leakage across training: accuracy vs round beside leakage vs round, a table per attacked round, and the
attacker's pick at each stage (early, midway, late): the label method the server acts on and the reconstruction
picked by the attack's own criterion (:mod:`fedsim.lab.pick`), never the best by ground truth.

The update a client sends in round ``r`` is computed from the global model after round ``r - 1``: that model's
test accuracy is what "the model attacked in round r" scored.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from fedsim.lab import plots
from fedsim.lab.report.chance import share
from fedsim.lab.report.common import (cfg, counts, e, figure, fmt, integer, mean, methods_in_order, num, ok, pct,
                                      table)
from fedsim.lab.pick import acted_label, attacker_picks, most_trusted
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
                         f'{fmt(mean(x.ssim for x in rs), ".2f")} · {share(mean(x.ident_reid_acc for x in rs))}</td>')
        rows.append(f'<tr>{"".join(cells)}</tr>')
    head = ["round", "model acc."] + lab_methods + inv_methods
    return table(head, rows, [True] * len(head))


def _acted(data: RunData) -> str | None:
    """The label method the server acts on (the one whose labels the inversions used, else the first configured)."""
    methods = methods_in_order(data.labels, cfg(data, "attack", "label_methods"))
    return acted_label([r for r in data.inversions if ok(r)], methods)[0]


def _acted_label_row(data: RunData, rnd: int) -> LabelRow | None:
    """The acted-on method's row of the round's first attacked client (by place, never by a score)."""
    acted = _acted(data)
    rows = [r for r in data.labels if ok(r) and integer(r.round) == rnd and str(r.method) == acted]
    return min(rows, key=lambda r: (integer(r.client) is None, integer(r.client) or 0), default=None)


def _round_picks(data: RunData, rnd: int) -> list:
    methods = methods_in_order(data.inversions, cfg(data, "attack", "inversion"))
    return [p.row for p in attacker_picks([r for r in data.inversions if integer(r.round) == rnd], methods)]


def _stage_card(data: RunData, rnd: int, acc: dict[int, float]) -> str:
    lab = _acted_label_row(data, rnd)
    methods = methods_in_order(data.inversions, cfg(data, "attack", "inversion"))
    pick = most_trusted(attacker_picks([r for r in data.inversions if integer(r.round) == rnd], methods))
    parts = [f'<h4>Round {rnd} <span class="muted">· model accuracy {pct(acc.get(rnd - 1))}</span></h4>']
    if lab is not None:
        true = counts(lab.true_counts)
        rest = counts(lab.restored_counts)
        parts.append(f'<p><b>Label restoration the server acts on</b>: {e(lab.method)}, client {e(lab.client)} '
                     f'{score_span(lab.label_instacc)}<br><span class="muted">true</span> {true_chips(true)}<br>'
                     f'<span class="muted">restored</span> '
                     f'{restored_chips(true, rest) if rest is not None else "–"}</p>')
    if pick is not None:
        parts.append(f'<p><b>The attacker\'s pick</b> ({e(pick.rule)})</p>'
                     f'<div class="gallery">{grid_figure(data, pick.row)}</div>')
    return f'<div class="card stage">{"".join(parts)}</div>'


def _pick_means(data: RunData, rnd: int) -> tuple[tuple[str, float] | None, tuple[str, float] | None]:
    """(label method acted on, its mean labels recovered) and (the method picked most often, the mean PSNR of the
    attacker's picks) in a round."""
    acted = _acted(data)
    lab = mean(r.label_instacc for r in data.labels if ok(r) and integer(r.round) == rnd and str(r.method) == acted)
    picks = _round_picks(data, rnd)
    psnr = mean(r.psnr for r in picks)
    names = [str(r.method) for r in picks]
    name = max(dict.fromkeys(names), key=names.count) if names else None
    return ((acted, lab) if acted is not None and lab is not None else None,
            (name, psnr) if name is not None and psnr is not None else None)


def story(data: RunData, rounds: list[int]) -> str:
    """One sentence: the model's accuracy and the attacker's picks' leakage at the first and last stage."""
    first, last = rounds[0], rounds[-1]
    acc = model_accuracy(data)
    (lab0, inv0), (lab1, inv1) = _pick_means(data, first), _pick_means(data, last)
    parts = [f"The clients attacked in round {first} trained from a model with {pct(acc.get(first - 1))} test "
             f"accuracy; in round {last}, from one with {pct(acc.get(last - 1))}."]
    if lab0 and lab1:
        parts.append(f"The label restoration the server acts on recovered {pct(lab0[1])} of the batch labels "
                     f"({e(lab0[0])}) in round {first} and {pct(lab1[1])} ({e(lab1[0])}) in round {last}.")
    if inv0 and inv1:
        parts.append(f"The attacker's picked reconstructions went from {inv0[1]:.1f} dB ({e(inv0[0])}) to "
                     f"{inv1[1]:.1f} dB ({e(inv1[0])}) PSNR.")
    return f'<p class="story">{" ".join(parts)}</p>'


def timeline(data: RunData) -> str | None:
    """The section, or None (no section) for a run of one round: it has no training to draw leakage across."""
    rounds = attacked_rounds(data)
    total = integer(cfg(data, "run", "num_rounds"))
    if len(rounds) < 2 and (total or max((integer(u.round) or 0 for u in data.utility), default=0)) <= 1:
        return None
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
              'right; and the share of the batch\'s labels recovered). Image methods: <b>PSNR · SSIM · '
              're-identified</b> (the share of reconstructions whose nearest image in the client\'s data is their '
              'source).</p>'
            + _per_round_table(data, rounds)
            + f'<h3>The attacker\'s pick at each stage</h3><div class="stages">{cards}</div>')
