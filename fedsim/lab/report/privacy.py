"""Privacy spent: epsilon (with delta and accountant) per DP setting, from the ``privacy`` rows."""

from __future__ import annotations

from collections import defaultdict

from fedsim.core.defense import registry as defense_registry
from fedsim.lab import plots
from fedsim.lab.report.common import (MAX_LIST_ROWS, defense_items, e, eps_value, figure, fmt, fmt_eps, integer,
                                      table)
from fedsim.lab.report.data import RunData
from fedsim.core.rows import PrivacyRow



def dp_settings(data: RunData) -> list[str]:
    """The DP mechanisms in force, each asked to its defense object (``fedsim.core.defense.registry.configured``);
    the old flat ``[defense]``: its ``dp`` keys."""
    defense = data.config.get("defense")
    if not isinstance(defense, dict):
        return []
    if any(isinstance(v, dict) for v in defense.values()):
        return defense_registry.configured(defense, dp_only=True)
    return [f"{k} = {v}" for k, v in defense_items(data) if "dp" in k.split(".")[0]]


def dp_on(data: RunData) -> bool:
    defense = data.config.get("defense")
    if isinstance(defense, dict) and any(isinstance(v, dict) for v in defense.values()):
        return bool(dp_settings(data))
    on = dict(defense_items(data))  # the old flat [defense]
    return any(on.get(k) is True for k in ("dp_sgd", "local_dp")) or on.get("central_dp") not in (
        "off", "", None, False)


#: how each built-in mechanism's sensitivity is written beside its number
SENSITIVITY_FORMULA = {"dp_sgd": "C", "central_dp": "2 C / m", "local_dp": "2 C"}


def relation_line(mechanism: str, rows: list[PrivacyRow]) -> str:
    """One plain-text line per mechanism: whose data, which neighbours, the sensitivity, the largest epsilon.
    ``central_dp: client-level, replace-one, sensitivity 0.333 (2 C / m); ε 12.4 at δ 1e-05 (dp-accounting-rdp)``.
    Rows of format 1 (no ``relation``) say that the relation was not recorded."""
    eps = [x for x in (eps_value(p.epsilon) for p in rows) if x is not None]
    last = max(rows, key=lambda p: integer(p.round) or 0)
    spent = f"ε {fmt_eps(max(eps) if eps else None, '.3g')} at δ {fmt(last.delta, '.0e')} ({last.accountant})"
    if last.relation is None:
        return (f"{mechanism}: neighbouring relation not recorded (format 1 rows, written before fedsim stated "
                f"it; central and local DP were then accounted at C where their relation needs 2 C); {spent}")
    formula = SENSITIVITY_FORMULA.get(mechanism)
    return (f"{mechanism}: {last.unit}-level, {last.relation}, sensitivity {fmt(last.sensitivity, '.3g')}"
            f"{f' ({formula})' if formula else ''}; {spent}")


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
        eps = [x for x in (eps_value(p.epsilon) for p in rows) if x is not None]
        last = max(rows, key=lambda p: integer(p.round) or 0)
        summary.append(f'<tr><td>{e(mech)}</td><td>{e(acct)}</td><td class="n">{e(delta)}</td>'
                       f'<td class="n"><b>{fmt_eps(max(eps) if eps else None, ".3f")}</b></td>'
                       f'<td class="n">{e(integer(last.round) if integer(last.round) is not None else "?")}</td>'
                       f'<td class="n">{len(rows)}</td></tr>')
    per_round = [f'<tr><td class="n">{e(p.round)}</td><td>{e(p.mechanism or "dp")}</td><td class="n">'
                 f'{fmt_eps(p.epsilon, ".3f")}</td><td class="n">{fmt(p.delta, ".0e")}</td><td>{e(p.accountant)}</td>'
                 f'<td class="n">{_release(p)}</td></tr>'
                 for p in sorted(data.privacy, key=lambda p: integer(p.round) or 0)[:MAX_LIST_ROWS]]
    settings = "; ".join(dp_settings(data))
    from fedsim.lab.report.bound import bound_html

    by_mech: dict[str, list[PrivacyRow]] = defaultdict(list)
    for p in data.privacy:
        by_mech[str(p.mechanism or "dp")].append(p)
    relations = "".join(f'<p class="relation">{e(relation_line(m, rows))}</p>' for m, rows in by_mech.items())
    eps_all = [x for x in (eps_value(p.epsilon) for p in data.privacy) if x is not None]
    scale = ""
    if eps_all and not bound_html(data):  # no bound rows: epsilon's (epsilon, delta) scale in one line
        from fedsim.lab.report.bound import epsilon_meaning

        last = max(data.privacy, key=lambda p: integer(p.round) or 0)
        scale = (f'<p class="relation">What ε {fmt_eps(max(eps_all), ".3g")} means: '
                 f'{e(epsilon_meaning(data, max(eps_all), last.delta))}</p>')
    return ((f'<p class="muted">Configured: {e(settings)}</p>' if settings else "")
            + relations
            + bound_html(data) + scale
            + _weakened(data.privacy)
            + table(["mechanism", "accountant", "δ", "ε spent (max)", "last round", "rows"], summary,
                    [False, False, True, True, True, True])
            + figure(plots.epsilon_plot(data.privacy), "epsilon spent after each round", narrow=True)
            + '<details><summary>ε per round (table)</summary>'
            + table(["round", "mechanism", "ε", "δ", "accountant", "release (z accounted, replies / denominator m)"],
                    per_round, [True, False, True, True, False, True])
            + "</details>")


def _release(p: PrivacyRow) -> str:
    """Central DP: the release's accounted noise multiplier (format 2: ``z / 2`` on ``2 C / m``; format 1: the
    effective ``z n / m``) and how many replies it summed out of the denominator ``m``."""
    if p.noise_multiplier is None:
        return ""
    return e(f"z {fmt(p.noise_multiplier, '.3g')}, {p.clients} / {p.sampled}")


def _weakened(rows: list[PrivacyRow]) -> str:
    """A warning when central DP averaged fewer clients than its noise was calibrated for (weaker noise): rows
    of format 1 only (a mean over the replies received). Since format 2 the denominator is fixed to m, so a
    dropped reply lowers the signal, not the noise."""
    short = [p for p in rows if p.clients is not None and p.sampled and p.clients < p.sampled and p.relation is None]
    if not short:
        return ""
    worst = min(short, key=lambda p: p.noise_multiplier if p.noise_multiplier is not None else 0.0)
    return (f'<div class="notice">Central DP averaged fewer clients than its noise was calibrated for in {len(short)} '
            f'round(s) (dropped or rejected replies): the effective noise multiplier fell to '
            f'{e(fmt(worst.noise_multiplier, ".3g"))} (round {e(worst.round)}, {worst.clients} of {worst.sampled}); '
            f'ε above accounts for every release as it ran.</div>')
