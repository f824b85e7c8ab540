"""The ``[faults]`` section parsed into a plan: which client does what in which round (no flwr, no torch).

Entries are comma-separated; ``client:kind[:round]`` for ``faults.corrupt`` and ``client[:round]`` for
``faults.dropout``, ``faults.straggle`` and ``faults.attack_crash``. Without a round an entry applies to every
round. Used by ``clients/faults.py`` (client-side injection) and ``fedsim.evaluation.attacking`` (attack crashes).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsim.core.errors import ConfigError
from fedsim.core.lists import comma_list
from fedsim.core.suggest import did_you_mean

CORRUPT_KINDS = ("nan", "inf", "shape", "dtype", "missing_key", "extra_key", "num_examples", "huge_norm")


def _int(key: str, text: str, entry: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{key}: {entry!r} is not client[:round] with integer ids") from None
    if value < 0:
        raise ConfigError(f"{key}: {entry!r} has a negative id")
    return value


def _entries(text: str) -> list[str]:
    return list(comma_list(text))


def _ids(key: str, text: str) -> dict[int, frozenset[int] | None]:
    """client -> rounds (None = every round)."""
    out: dict[int, set[int] | None] = {}
    for entry in _entries(text):
        parts = entry.split(":")
        if len(parts) > 2:
            raise ConfigError(f"{key}: {entry!r} is not client[:round]")
        client = _int(key, parts[0], entry)
        if len(parts) == 1:
            out[client] = None
        elif out.get(client, set()) is not None:
            out.setdefault(client, set()).add(_int(key, parts[1], entry))
    return {c: (None if r is None else frozenset(r)) for c, r in out.items()}


@dataclass(frozen=True)
class FaultPlan:
    enabled: bool
    corrupt: tuple[tuple[int, str, int | None], ...]
    dropout: dict
    straggle: dict
    attack_crash: dict
    straggle_seconds: float
    huge_norm_factor: float

    @staticmethod
    def _hit(table: dict, client: int, server_round: int) -> bool:
        if client not in table:
            return False
        rounds = table[client]
        return rounds is None or server_round in rounds

    def corruption(self, client: int, server_round: int) -> str | None:
        if not self.enabled:
            return None
        for c, kind, r in self.corrupt:
            if c == client and (r is None or r == server_round):
                return kind
        return None

    def drops_out(self, client: int, server_round: int) -> bool:
        return self.enabled and self._hit(self.dropout, client, server_round)

    def straggles(self, client: int, server_round: int) -> bool:
        return self.enabled and self._hit(self.straggle, client, server_round)

    def crashes_attack(self, client: int, server_round: int) -> bool:
        return self.enabled and self._hit(self.attack_crash, client, server_round)


def parse_faults(section) -> FaultPlan:
    """Validate and parse a ``FaultsSection``; errors name the key and what is allowed."""
    corrupt = []
    for entry in _entries(section.corrupt):
        parts = entry.split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(f"faults.corrupt: {entry!r} is not client:kind[:round]")
        client = _int("faults.corrupt", parts[0], entry)
        kind = parts[1].strip()
        if kind not in CORRUPT_KINDS:
            raise ConfigError(f"faults.corrupt: {kind!r} is not one of {', '.join(CORRUPT_KINDS)}"
                              f"{did_you_mean(kind, CORRUPT_KINDS)}")
        rnd = _int("faults.corrupt", parts[2], entry) if len(parts) == 3 else None
        corrupt.append((client, kind, rnd))
    return FaultPlan(enabled=section.enabled, corrupt=tuple(corrupt),
                     dropout=_ids("faults.dropout", section.dropout),
                     straggle=_ids("faults.straggle", section.straggle),
                     attack_crash=_ids("faults.attack_crash", section.attack_crash),
                     straggle_seconds=section.straggle_seconds, huge_norm_factor=section.huge_norm_factor)
