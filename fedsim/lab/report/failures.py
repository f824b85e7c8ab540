"""Failures: lost rounds, attacks that crashed or timed out, attacks that ran but could not be scored, skipped
attacks, updates that could not be captured, rejected client replies, weight-capped ones (apart: they were
aggregated), and what the reader had to skip."""

from __future__ import annotations

from collections import Counter

from fedsim.lab.report.common import MAX_LIST_ROWS, e, integer, ok, or_q, short, table
from fedsim.lab.report.data import RunData


def _lost_rounds(data: RunData) -> str:
    if not data.lost_rounds:
        return '<h3>Lost rounds</h3><p class="muted">None: every round aggregated at least one update.</p>'
    rows = [f'<tr><td class="n">{or_q(r.round)}</td><td class="n">{or_q(r.replies)}</td>'
            f'<td class="n">{or_q(r.rejected)}</td><td class="n">{or_q(r.failed)}</td>'
            f'<td class="err">{short(r.reason)}</td></tr>'
            for r in sorted(data.lost_rounds, key=lambda r: integer(r.round) or 0)[:MAX_LIST_ROWS]]
    return (f'<h3>Lost rounds ({len(data.lost_rounds)})</h3><p class="lead">Rounds that aggregated nothing: the '
            f'global model stayed as it was.</p>'
            + table(["round", "replies", "rejected", "failed", "reason"], rows, [True, True, True, True, False]))


def _failed_attacks(data: RunData) -> str:
    failed = [(r.KIND, r.round, r.client, r.method, r.error) for r in data.failed]
    failed += [(r.KIND, r.round, r.client, r.method, r.error) for r in data.attack_errors]
    if not failed:
        return '<h3>Failed attacks</h3><p class="muted">None.</p>'
    reasons = Counter(str(f[4] or "no reason given")[:200] for f in failed)
    by_reason = [f'<tr><td class="n">{n}</td><td class="err">{e(reason)}</td></tr>'
                 for reason, n in reasons.most_common(MAX_LIST_ROWS)]
    detail = [f'<tr><td>{e(kind)}</td><td class="n">{or_q(rnd)}</td><td class="n">{or_q(cl)}</td>'
              f'<td>{e(m if m is not None else "(whole attack)")}</td><td class="err">{short(err)}</td></tr>'
              for kind, rnd, cl, m, err in failed[:MAX_LIST_ROWS]]
    return (f'<h3>Failed attacks ({len(failed)})</h3><p class="lead">Attacks that raised, crashed their worker or '
            f'timed out (<code>attack_error</code>), and attack rows with <code>ok = false</code>.</p>'
            + table(["count", "reason"], by_reason, [True, False])
            + '<details open><summary>every failed attack</summary>'
            + table(["kind", "round", "client", "method", "error"], detail, [False, True, True, False, False])
            + "</details>")


def _unscored(data: RunData) -> str:
    unscored = [r for r in data.attacks if ok(r) and r.score_error]
    if not unscored:
        return ""
    rows = [f'<tr><td>{e(r.KIND)}</td><td class="n">{or_q(r.round)}</td><td class="n">{or_q(r.client)}</td>'
            f'<td>{or_q(r.method)}</td><td class="err">{short(r.score_error)}</td></tr>'
            for r in unscored[:MAX_LIST_ROWS]]
    return (f'<h3>Attacks that ran but could not be scored ({len(unscored)})</h3><p class="lead">Usually the '
            f'ground truth (audit/) for that update is missing.</p>'
            + table(["kind", "round", "client", "method", "reason"], rows, [False, True, True, False, False]))


def _listing(title: str, items: list, lead: str, head: list[str], numeric: list[bool], rows: list[str]) -> str:
    if not items:
        return f'<h3>{e(title)}</h3><p class="muted">None.</p>'
    return (f'<h3>{e(title)} ({len(items)})</h3><p class="lead">{lead}</p>' + table(head, rows, numeric))


def _skipped(data: RunData) -> str:
    rows = [f'<tr><td class="n">{or_q(r.round)}</td><td class="n">{or_q(r.client)}</td>'
            f'<td>{e(r.method or "")}</td><td class="err">{short(r.reason)}</td></tr>'
            for r in data.skipped[:MAX_LIST_ROWS]]
    return _listing("Skipped attacks", data.skipped, "Updates not attacked (queue full, attack not applicable): "
                    "not failures.", ["round", "client", "method", "reason"], [True, True, False, False], rows)


def _replies(rows) -> list[str]:
    return [f'<tr><td class="n">{or_q(r.round)}</td><td class="n">{or_q(r.node)}</td>'
            f'<td class="n">{or_q(r.client)}</td><td class="err">{short(r.reason)}</td></tr>'
            for r in rows[:MAX_LIST_ROWS]]


def _rejections(data: RunData) -> str:
    """Refused replies and capped ones, apart: a reply capped by the screen was aggregated (with a lowered
    weight), not rejected."""
    head, numeric = ["round", "node", "client", "reason"], [True, True, True, False]
    out = _listing("Rejected client replies", data.refused, "Malformed or implausible replies the server refused "
                   "to aggregate (and did not attack).", head, numeric, _replies(data.refused))
    if data.capped:
        out += _listing("Capped client replies", data.capped, "Replies aggregated with their FedAvg weight lowered "
                        "to <code>validation.max_weight_share</code> of the round: accepted (and attacked), not "
                        "rejected.", head, numeric, _replies(data.capped))
    return out


def _capture_errors(data: RunData) -> str:
    if not data.capture_errors:
        return ""
    rows = [f'<tr><td class="n">{or_q(r.round)}</td><td class="n">{or_q(r.client)}</td>'
            f'<td>{e(r.sink or "")}</td><td class="err">{short(r.error)}</td></tr>'
            for r in data.capture_errors[:MAX_LIST_ROWS]]
    return _listing("Updates not captured", data.capture_errors, "Accepted updates that a server sink (the "
                    "capture store) failed on (<code>capture_error</code>): aggregated, but not captured; the round "
                    "went on.", ["round", "client", "sink", "error"], [True, True, False, False], rows)


def _reader_notes(data: RunData) -> str:
    notes = [f"{n} unreadable line{'s' if n != 1 else ''} in {name} skipped (a run still writing?)"
             for name, n in data.bad_lines.items()]
    if data.malformed:
        notes.append("rows missing a required field skipped: " + ", ".join(
            f"{k} ({n})" for k, n in data.malformed.most_common()))
    if data.superseded:
        notes.append(f"{data.superseded} earlier attack row{'s' if data.superseded != 1 else ''} superseded by a "
                     f"later row for the same round, client and method (re-run with fedsim attack)")
    if data.unknown_kinds:
        notes.append("rows of unknown kinds ignored: " + ", ".join(
            f"{k} ({n})" for k, n in data.unknown_kinds.most_common()))
    if data.config_error:
        notes.append(f"config.toml could not be read: {data.config_error}")
    return '<div class="notice">' + "<br>".join(e(n) for n in notes) + "</div>" if notes else ""


def failures(data: RunData) -> str:
    return "".join([_lost_rounds(data), _failed_attacks(data), _unscored(data), _skipped(data),
                    _capture_errors(data), _rejections(data), _reader_notes(data)])
