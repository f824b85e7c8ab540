"""Which updates a run stores: the capture selection, what the attack scheduler adds, and the audit store.

``capture.rounds`` / ``capture.clients`` take ``'all'``, comma-separated ids, or ``'attacked'`` (the default): the
rounds / clients that ``attack.rounds`` / ``attack.clients`` select, whether or not ``attack.enabled`` is on (a
later ``fedsim attack RUN`` or a sweep's replayed attacks use the same selection, so they find every capture
they need). ``'all'`` keeps every round / client, as before.

One rule, used by every process that loads the config: the ServerApp's capture sink
(``fedsim.server.sinks.CaptureWriter``), the attack scheduler (it captures every update it attacks), the ClientApp
(it writes the audit store only for updates that are captured, so only those can be scored) and the disk
estimate of ``fedsim check`` / ``fedsim run`` (``fedsim.lab.check``). Pure functions of the config: no torch.
"""

from __future__ import annotations

from typing import Any

from fedsim.core.config_checks import ATTACKED, parse_selection
from fedsim.core.defense.secagg import AGGREGATE_CLIENT

Selection = frozenset[int] | None  # None: all


def capture_text(cfg: Any, axis: str) -> str:
    """``capture.<axis>`` (``rounds`` or ``clients``) with ``'attacked'`` replaced by ``attack.<axis>``."""
    text = getattr(cfg.capture, axis)
    return getattr(cfg.attack, axis) if text.strip().lower() == ATTACKED else text


def capture_selection(cfg: Any) -> tuple[Selection, Selection]:
    """(rounds, clients) the capture sink keeps (``None``: all); ``'attacked'`` resolved."""
    return (parse_selection("capture.rounds", capture_text(cfg, "rounds")),
            parse_selection("capture.clients", capture_text(cfg, "clients")))


def attack_selection(cfg: Any) -> tuple[Selection, Selection]:
    return parse_selection("attack.rounds", cfg.attack.rounds), parse_selection("attack.clients", cfg.attack.clients)


def _in(sel: tuple[Selection, Selection], server_round: int, client_id: int) -> bool:
    rounds, clients = sel
    return (rounds is None or server_round in rounds) and (clients is None or client_id in clients)


def captured(cfg: Any, server_round: int, client_id: int) -> bool:
    """Whether the update of ``client_id`` in ``server_round`` ends up under ``captures/``: selected by the capture
    sink (``capture.enabled``), or attacked live (``attack.enabled``: the scheduler captures what it attacks;
    ``attack.max_attacks`` may stop it earlier)."""
    return bool((cfg.capture.enabled and _in(capture_selection(cfg), server_round, client_id))
                or (cfg.attack.enabled and _in(attack_selection(cfg), server_round, client_id)))


def audited(cfg: Any, server_round: int, client_id: int, secagg: bool = False) -> bool:
    """Whether a client writes its ground truth for this round: only when its update (or, under SecAgg+, the
    cohort's aggregate, client ``AGGREGATE_CLIENT``) is captured, the only updates that can be scored."""
    return captured(cfg, server_round, AGGREGATE_CLIENT if secagg else client_id)
