"""A defense is one object: everything fedsim knows about one ``[defense.<table>]``, asked in one place.

:class:`Defense` answers, for its table's config record (the frozen schema dataclass of ``fedsim.core.defense_config``
or of the defense's own module):

==========================  ==================================================================================
question                    method / attribute
==========================  ==================================================================================
is it on?                   :meth:`Defense.on`
how is it described?        :meth:`Defense.parts` (sweep labels and families), :meth:`Defense.configured`
                            (the report's "defense" cell and "Configured:" line)
what applies it?            :meth:`Defense.appliers`: :class:`Applier` records (a Flower client mod, a server
                            strategy wrapper, a server workflow, a training hook) that the Flower shells resolve
                            by name (``fedsim.clients.mods.CLIENT_MODS``, ``fedsim.server.defense_wiring.STRATEGY_WRAPPERS``,
                            ``fedsim.server.app.WORKFLOWS``) or, for a ``"module:attr"`` name, with importlib
what did it spend?          :meth:`Defense.spent` (``fedsim.core.accounting``) and :attr:`Defense.privacy_rows`
                            (who writes its privacy rows while the run goes)
what does loading refuse?   :meth:`Defense.check` (one-line ``ConfigError`` naming the key)
what does a capture hold?   :meth:`Defense.record` (its settings under their config keys, in every
                            ``ClientUpdate.defenses`` and attack row)
what does it change else?   :attr:`Defense.hides_train_loss`, :attr:`Defense.equal_weights`,
                            :attr:`Defense.aggregate_only`
==========================  ==================================================================================

The core never imports Flower (``tests/test_architecture.py``), so an applier is a *name*; the registry of defenses
is ``fedsim.core.defense_registry``.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

#: kinds of :class:`Applier`
CLIENT_MOD, STRATEGY, WORKFLOW, TRAINING_HOOK = "client_mod", "strategy", "workflow", "training_hook"


@dataclass(frozen=True)
class Applier:
    """What applies a defense. ``name`` is a key of the shell's table for ``kind`` or a ``"module:attr"`` string
    (a Flower mod / strategy wrapper factory resolved with importlib in the shell). Client mods run in the order
    of ``position``, outermost (smallest) first: SecAgg+ 10, LocalDpMod 20, fixedclipping_mod 30, update
    defenses 40, anything else 50 by default. A training hook runs inside ``train()`` (``fedsim.core.defended_training``)."""

    kind: str
    name: str
    position: int = 50


def resolve(name: str, table: Mapping[str, Any], what: str) -> Any:
    """The shell's object for an applier name: ``table[name]``, or ``module:attr`` imported (a user's plugin)."""
    if name in table:
        return table[name]
    module, sep, attr = name.partition(":")
    if not sep:
        raise KeyError(f"{what} {name!r}: not one of {', '.join(table)} and not a 'module:attr' name")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Defense:
    """One ``[defense.<table>]`` (see the module docstring). Subclass it, set ``table`` and ``schema``, override
    what differs from the defaults, and add one line to ``fedsim.core.defense_registry.BUILTIN`` (or call
    ``fedsim.core.defense_registry.register``)."""

    table: str = ""
    schema: type = object
    dp: bool = False  # a differential-privacy mechanism (its settings go on the report's "Configured:" line)
    privacy_rows: str = ""  # who writes its privacy rows: "clients" (they report epsilon), "wrapper" (its
    #                         server wrapper, per release as run), "server" (the server, from spent() per round)
    hides_train_loss: bool = False  # the reply must not carry train_loss (no epsilon covers it / SecAgg+ hides)
    equal_weights: bool = False  # FedAvg averages with equal weights (central DP's calibration)
    aggregate_only: bool = False  # the server sees only the aggregate, client AGGREGATE_CLIENT (SecAgg+)

    def on(self, t: Any) -> bool:
        """Whether the table ``t`` switches the defense on."""
        return bool(getattr(t, "enabled", False))

    def parts(self, t: Any) -> list[tuple[str, str]]:
        """(label in words, family) of each mechanism in force (sweep labels): ``[("SecAgg+", "SecAgg+")]``."""
        return [(self.table, self.table)]

    def configured(self, values: Mapping[str, Any]) -> str:
        """The report's line for a table in force, from its keys as written: ``name (key = value, ...)`` without
        the switch itself."""
        params = ", ".join(f"{k} = {v}" for k, v in values.items() if k != "enabled")
        return f"{self.table} ({params})" if params else self.table

    def appliers(self, t: Any) -> tuple[Applier, ...]:
        """What applies the defense for this table (asked only when :meth:`on`)."""
        return ()

    def check(self, cfg: Any, config_error: type[Exception]) -> None:
        """Refuse at load, in one line, what the mechanism cannot honour (asked only when :meth:`on`)."""

    def spent(self, cfg: Any, t: Any, rounds: int, delta: float, client_examples: int | None) -> list:
        """``fedsim.core.accounting.Spent`` of the mechanism over ``rounds`` aggregated rounds (asked only when on)."""
        return []

    def record(self, t: Any) -> dict[str, Any]:
        """What a capture and an attack row record about it: every setting under its config key."""
        return {f"defense.{self.table}.{k}": v for k, v in dataclasses.asdict(t).items()}

    def from_record(self, flat: Mapping[str, Any]) -> Any | None:
        """The table rebuilt from a record (:meth:`record`'s keys; unknown keys ignored), None when absent."""
        head = f"defense.{self.table}."
        names = {f.name for f in dataclasses.fields(self.schema)}
        values = {k[len(head):]: v for k, v in flat.items() if k.startswith(head) and k[len(head):] in names}
        if not values:
            return None
        try:
            return self.schema(**values)
        except (TypeError, ValueError):
            return None

    def __repr__(self) -> str:
        return f"<defense [defense.{self.table}]>"


class DefensesInForce(Mapping[str, Any]):
    """The defenses in force, read-only: table name -> its config record, in registry order."""

    def __init__(self, tables: Mapping[str, Any]) -> None:
        self._tables = dict(tables)

    def __getitem__(self, table: str) -> Any:
        return self._tables[table]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    def __repr__(self) -> str:
        return f"DefensesInForce({', '.join(self._tables) or 'none'})"
