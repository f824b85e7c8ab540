"""Privacy spent: epsilon (with delta and accountant) per DP setting, from the ``privacy`` rows."""

from __future__ import annotations

from collections import defaultdict

from fedsim.lab.report.common import MAX_LIST_ROWS, defense_items, e, fmt, integer, num, table
from fedsim.lab.report.data import RunData
from fedsim.rows import PrivacyRow



def dp_settings(data: RunData) -> list[tuple[str, object]]:
    """The configured DP settings: flat ``dp`` keys of ``[defense]`` or its ``*dp*`` tables."""
    return [(k, v) for k, v in defense_items(data) if "dp" in k.split(".")[0]]


def dp_on(data: RunData) -> bool:
    on = {k: v for k, v in dp_settings(data)}
    return any(v is True for k, v in on.items() if k.endswith(("enabled", "dp_sgd", "local_dp"))) or any(
        v not in ("off", "", None, False) for k, v in on.items() if k in ("central_dp", "central_dp.clipping"))


def _setting_key(p: PrivacyRow) -> tuple[str, str, str]:
    return str(p.mechanism or "dp"), str(p.accountant), fmt(p.delta, ".0e")


def privacy(data: RunData) -> str:
    if not data.privacy:
        return ('<p class="muted">A DP mechanism is configured but no accountant reported a privacy row.</p>'
                if dp_on(data) else '<p class="muted">No differential privacy in this run: no ε to report.</p>')
    by_setting: dict[tuple, list[PrivacyRow]] = defaultdict(list)
    for p in data.privacy:
        by_setting[_setting_key(p)].append(p)
    summary = []
    for (mech, acct, delta), rows in by_setting.items():
        eps = [num(p.epsilon) for p in rows if num(p.epsilon) is not None]
        last = max(rows, key=lambda p: integer(p.round) or 0)
        summary.append(f'<tr><td>{e(mech)}</td><td>{e(acct)}</td><td class="n">{e(delta)}</td>'
                       f'<td class="n"><b>{fmt(max(eps) if eps else None, ".3f")}</b></td>'
                       f'<td class="n">{e(integer(last.round) if integer(last.round) is not None else "?")}</td>'
                       f'<td class="n">{len(rows)}</td></tr>')
    per_round = [f'<tr><td class="n">{e(p.round)}</td><td>{e(p.mechanism or "dp")}</td><td class="n">'
                 f'{fmt(p.epsilon, ".3f")}</td><td class="n">{fmt(p.delta, ".0e")}</td><td>{e(p.accountant)}</td></tr>'
                 for p in sorted(data.privacy, key=lambda p: integer(p.round) or 0)[:MAX_LIST_ROWS]]
    settings = ", ".join(f"{k} = {v}" for k, v in dp_settings(data))
    return ((f'<p class="muted">Configured: {e(settings)}</p>' if settings else "")
            + table(["mechanism", "accountant", "δ", "ε spent (max)", "last round", "rows"], summary,
                    [False, False, True, True, True, True])
            + '<details><summary>ε per round</summary>'
            + table(["round", "mechanism", "ε", "δ", "accountant"], per_round, [True, False, True, True, False])
            + "</details>")
