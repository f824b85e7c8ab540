"""Which reconstruction of an update is the headline: the attacker's own pick, never the best by ground truth.

A server with several reconstructions of one update (several methods, settings or restarts) must choose one
without the client's images. It chooses the row with the lowest ``criterion``, the attack's own no-ground-truth
score (``fedsim.core.types.InversionResult.criterion``, e.g. the final gradient-matching loss; lower = better).
An update without any recorded criterion (rows written before it existed) falls back to a choice made in
advance, the first configured inversion method (config order, then the order in the file); the pick says so.

Labels: the server acts on the label method whose labels the inversion used (``InversionRow.label_source``), else
on the first configured label method (:func:`acted_label`).

The **oracle** (:func:`oracle_pick`) is the row with the highest PSNR, which needs the ground truth: an upper
bound on what any rule could pick, shown labelled as such and never as the headline.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from fedsim.core.lists import comma_list
from fedsim.core.rows import finite_float

BY_CRITERION = "lowest criterion"
FALLBACK = "first configured method (no criterion recorded)"
ORACLE = "oracle best (ground-truth pick, upper bound)"


@dataclass(frozen=True)
class Pick:
    """The row picked for one update (round, client) and the rule that picked it."""

    row: Any
    rule: str  # BY_CRITERION or FALLBACK


def by_update(rows: Iterable[Any]) -> dict[tuple[Any, Any], list[Any]]:
    """Successful inversion rows grouped by (round, client), in file order."""
    out: dict[tuple[Any, Any], list[Any]] = defaultdict(list)
    for r in rows:
        if getattr(r, "ok", None) is True:
            out[(r.round, r.client)].append(r)
    return dict(out)


def _order(configured: Sequence[str] | str | None) -> list[str]:
    return list(comma_list(configured))


def pick_one(rows: Sequence[Any], configured: Sequence[str] | str | None = None) -> Pick | None:
    """The attacker's pick among one update's rows (None when there is none)."""
    rows = [r for r in rows if getattr(r, "ok", None) is True]
    if not rows:
        return None
    order = _order(configured)
    rank = {m: i for i, m in enumerate(order)}
    place = {id(r): i for i, r in enumerate(rows)}
    scored = [r for r in rows if finite_float(getattr(r, "criterion", None)) is not None]
    if scored:
        best = min(scored, key=lambda r: (finite_float(r.criterion), rank.get(str(r.method), len(rank)),
                                          place[id(r)]))
        return Pick(best, BY_CRITERION)
    return Pick(min(rows, key=lambda r: (rank.get(str(r.method), len(rank)), place[id(r)])), FALLBACK)


def attacker_picks(rows: Iterable[Any], configured: Sequence[str] | str | None = None) -> list[Pick]:
    """One :class:`Pick` per attacked update, in (round, client) order."""
    groups = by_update(rows)
    picks = [pick_one(groups[k], configured) for k in sorted(groups, key=_key)]
    return [p for p in picks if p is not None]


def most_trusted(picks: Sequence[Pick]) -> Pick | None:
    """Of several updates' picks, the one the attacker trusts most: the lowest criterion, else the first."""
    scored = [p for p in picks if finite_float(getattr(p.row, "criterion", None)) is not None]
    if scored:
        return min(scored, key=lambda p: finite_float(p.row.criterion))
    return picks[0] if picks else None


def oracle_pick(rows: Sequence[Any]) -> Any | None:
    """The row of one update with the highest PSNR (ground truth: an upper bound, not an attack)."""
    scored = [r for r in rows if getattr(r, "ok", None) is True and finite_float(getattr(r, "psnr", None)) is not None]
    return max(scored, key=lambda r: finite_float(r.psnr), default=None)


def oracle_picks(rows: Iterable[Any]) -> list[Any]:
    """The oracle row of every attacked update with a PSNR, in (round, client) order."""
    groups = by_update(rows)
    picks = [oracle_pick(groups[k]) for k in sorted(groups, key=_key)]
    return [p for p in picks if p is not None]


def rule_of(picks: Sequence[Pick]) -> str | None:
    """How the picks were made, in words: one rule, or both with their counts."""
    counts: dict[str, int] = defaultdict(int)
    for p in picks:
        counts[p.rule] += 1
    if not counts:
        return None
    if len(counts) == 1:
        return next(iter(counts))
    return "; ".join(f"{rule} ({n} updates)" for rule, n in counts.items())


def acted_label(inversions: Iterable[Any], methods: Sequence[str]) -> tuple[str | None, str | None]:
    """(label method the server acts on, why): the most frequent ``label_source`` of the inversion rows that names
    one of ``methods`` (the label methods that ran, config order first), else the first of ``methods``."""
    sources = [str(r.label_source) for r in inversions if getattr(r, "label_source", None) in set(methods)]
    if sources:
        return max(dict.fromkeys(sources), key=sources.count), "labels the inversion used"
    return (methods[0], "first configured label method") if methods else (None, None)


def _key(k: tuple[Any, Any]) -> tuple[float, float]:
    return tuple(f if (f := finite_float(v)) is not None else float("inf") for v in k)  # type: ignore[return-value]
