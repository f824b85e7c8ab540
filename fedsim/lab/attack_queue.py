"""The attack queue as ``fedsim run``'s progress display shows it: ``attacks k of n done``.

The ServerApp's scheduler (``server/scheduler.py``) attacks each selected update in worker processes; after the
last round it drains its queue before the run ends, which for the demo's ig-shadow takes minutes. The driver sees
only the run folder, so both numbers are read from it (no new file, nothing the server must report):

* ``n``: the captures the attack selects (``attack.rounds`` x ``attack.clients``, the first ``attack.max_attacks``;
  ``RunFolder.captures_selected``, the selection ``fedsim attack`` replays). The scheduler captures every update it
  attacks before it submits the attack, so once training has ended ``n`` is the number of attacks submitted.
* ``k``: the updates with a live (not replayed) attack row: a label or inversion row, an ``attack_error`` (crashed,
  timed out) or a ``skipped`` row (queue full, not applicable); the scheduler writes an attack's rows together.

``last`` names the latest finished attack with its inversion method and PSNR (or its label methods), so a long
wait says which method is being waited for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from fedsim.core.rows import AttackErrorRow, InversionRow, LabelRow, Row, SkippedRow
from fedsim.core.runfolder import RunFolder

_ATTACK_ROWS = (LabelRow, InversionRow, AttackErrorRow, SkippedRow)


@dataclass(frozen=True)
class AttackQueue:
    """``done`` of ``total`` attacked updates finished; ``last``: the latest one in words (may be empty)."""

    done: int
    total: int
    last: str = ""

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def text(self) -> str:
        """``attacks 3 of 8 done; last: round 30 client 1, ig-shadow 14.8 dB``."""
        return f"attacks {self.done} of {self.total} done" + (f"; last: {self.last}" if self.last else "")


def _last_words(rows: Sequence[Row], update: tuple[int, int]) -> str:
    """The finished update in words: its inversion method(s) with PSNR, else its label methods, else why not."""
    mine = [r for r in rows if (r.round, r.client) == update]
    parts = []
    for r in mine:
        if isinstance(r, InversionRow):
            parts.append(f"{r.method} {r.psnr:.1f} dB" if r.ok and r.psnr is not None else
                         f"{r.method} {'ok' if r.ok else 'failed'}")
        elif isinstance(r, AttackErrorRow):
            parts.append(f"{r.method or 'attack'} crashed")
        elif isinstance(r, SkippedRow):
            parts.append(f"{r.method or 'attack'} skipped")
    labels = [r.method for r in mine if isinstance(r, LabelRow)]
    if not parts and labels:
        parts.append(f"labels ({', '.join(labels)})")
    return f"round {update[0]} client {update[1]}" + (f", {'; '.join(parts)}" if parts else "")


def attack_queue(folder: RunFolder, rows: Sequence[Row], rounds: frozenset[int] | None,
                 clients: frozenset[int] | None, max_attacks: int = 0) -> AttackQueue:
    """The queue of a run in progress from its run folder and its rows (``folder.rows()``, read once by the
    caller); ``rounds`` / ``clients`` as ``fedsim.core.config.parse_selection`` returns them."""
    total = len(folder.captures_selected(rounds, clients, max_attacks))
    order: list[tuple[int, int]] = []
    live = [r for r in rows if isinstance(r, _ATTACK_ROWS) and not getattr(r, "replay", None)]
    for r in live:
        if (r.round, r.client) not in order:
            order.append((r.round, r.client))
        else:  # a later row of the same update: it finished last
            order.remove((r.round, r.client))
            order.append((r.round, r.client))
    last = _last_words(live, order[-1]) if order else ""
    return AttackQueue(len(order), max(total, len(order)), last)


def queue_of_config(folder: RunFolder, rows: Sequence[Row], cfg) -> AttackQueue | None:
    """:func:`attack_queue` for a run's ``ExperimentConfig``; None when the run attacks nothing."""
    from fedsim.core.config import parse_selection

    if not cfg.attack.enabled:
        return None
    queue = attack_queue(folder, rows, parse_selection("attack.rounds", cfg.attack.rounds),
                         parse_selection("attack.clients", cfg.attack.clients), cfg.attack.max_attacks)
    return queue if queue.total else None
