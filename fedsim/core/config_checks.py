"""Cross-section checks of the federation a config describes: what would otherwise pass and fail (or do
nothing) only after Flower has started.

* ``train.min_train_nodes`` above ``run.num_clients``: Flower's ``sample_nodes``
  (``flwr.serverapp.strategy.strategy_utils``) loops "Waiting for nodes to connect" until that many SuperNodes
  are online, so the run waits forever.
* ``attack.clients`` / ``capture.clients`` naming a client that does not exist (ids are partition ids
  ``0 .. run.num_clients - 1``; under SecAgg+ the server sees only the aggregate, client
  :data:`AGGREGATE_CLIENT`), and ``attack.rounds`` / ``capture.rounds`` outside ``1 .. run.num_rounds``: the
  selection matches nothing and the run attacks or captures nobody without a word.

An attacked round needs no capture selection: the attack scheduler writes the capture of every update it
attacks (``server/scheduler.py``), so ``attack.rounds`` outside ``capture.rounds`` works and is not refused.
Pure functions of the config: they run in every process that loads it (CLI, ServerApp, ClientApp).
"""

from __future__ import annotations

from typing import Any

from fedsim.core.defense.secagg import AGGREGATE_CLIENT  # the secure aggregate's client id
from fedsim.core.errors import ConfigError
from fedsim.core.lists import comma_list

#: ``capture.rounds`` / ``capture.clients`` value: the rounds / clients the attack selection names
#: (``fedsim.core.capture_plan``); such a capture key is checked as its ``attack.*`` key
ATTACKED = "attacked"


def parse_selection(key: str, text: str) -> frozenset[int] | None:
    """'all' -> None (everything); '1,3' -> {1, 3}."""
    if text.strip().lower() == "all":
        return None
    try:
        return frozenset(int(t) for t in comma_list(text))
    except ValueError:
        more = " (or 'attacked': the attack selection)" if key.startswith("capture.") else ""
        raise ConfigError(f"{key}: expected 'all' or comma-separated integers{more}, got {text!r}") from None


def check_federation(cfg: Any) -> None:
    """Refuse, in one line naming the key, a federation Flower would wait on forever or a selection of nothing."""
    n, rounds = cfg.run.num_clients, cfg.run.num_rounds
    if cfg.train.min_train_nodes > n:
        raise ConfigError(
            f"train.min_train_nodes: {cfg.train.min_train_nodes} is above run.num_clients = {n}; Flower would wait "
            f"forever for SuperNodes that never connect (valid: 1 .. {n})")
    from fedsim.core.defense.registry import aggregate_only

    secagg = aggregate_only(cfg.defense)  # SecAgg+: the server sees only the aggregate
    for key, text in (("capture.clients", cfg.capture.clients), ("attack.clients", cfg.attack.clients)):
        if text.strip().lower() != ATTACKED:
            _check_clients(key, parse_selection(key, text), n, secagg)
    for key, text in (("capture.rounds", cfg.capture.rounds), ("attack.rounds", cfg.attack.rounds)):
        if text.strip().lower() == ATTACKED:
            continue
        chosen = parse_selection(key, text)
        if chosen is None:
            continue
        if not chosen:
            raise ConfigError(f"{key}: selects no round; valid: 'all' or round numbers in 1 .. {rounds}")
        bad = sorted(r for r in chosen if not 1 <= r <= rounds)
        if bad:
            raise ConfigError(f"{key}: round {bad[0]} is outside 1 .. run.num_rounds = {rounds}; it would select "
                              "nothing (valid: 'all' or round numbers in that range)")


def _check_clients(key: str, chosen: frozenset[int] | None, num_clients: int, secagg: bool) -> None:
    if chosen is None:
        return
    valid = f"'all' or client ids in 0 .. {num_clients - 1}"
    if secagg:
        if AGGREGATE_CLIENT not in chosen:
            raise ConfigError(
                f"{key}: under SecAgg+ (defense.secagg.enabled) the server sees only the aggregate, client "
                f"{AGGREGATE_CLIENT}, so {','.join(map(str, sorted(chosen))) or 'nothing'} selects nothing "
                f"(valid: 'all' or {AGGREGATE_CLIENT})")
        return
    if not chosen:
        raise ConfigError(f"{key}: selects no client; valid: {valid}")
    bad = sorted(c for c in chosen if not 0 <= c < num_clients)
    if bad:
        raise ConfigError(f"{key}: client {bad[0]} does not exist (run.num_clients = {num_clients}); valid: {valid}")
