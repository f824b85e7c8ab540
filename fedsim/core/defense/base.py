"""What every defense object is made of: :class:`Defense`, its :class:`Applier` records, the typed record of a
capture (:class:`DefenseRecord`) and the round a server stack hands to :meth:`Defense.privacy_rows`.

:class:`Defense` answers, for its table's config record (the frozen schema dataclass of its own module):

==========================  ==================================================================================
question                    method / attribute
==========================  ==================================================================================
is it on?                   :meth:`Defense.on`
how is it described?        :meth:`Defense.parts` (sweep labels and families), :meth:`Defense.configured`
                            (the report's "defense" cell and "Configured:" line)
what applies it?            :meth:`Defense.appliers`: :class:`Applier` records. A Flower client mod, server
                            strategy wrapper or server workflow is a *name* the Flower shells resolve
                            (``fedsim.clients.mods.CLIENT_MODS``, ``fedsim.server.defense_wiring.STRATEGY_WRAPPERS``,
                            ``fedsim.server.app.WORKFLOWS``; a ``"module:attr"`` name with importlib: the core
                            never imports Flower); a training hook carries its function (:attr:`Applier.hook`),
                            which ``fedsim.core.defense.registry.train_defended`` calls
what did it spend?          :meth:`Defense.spent` (``fedsim.core.accounting``)
which rows does it write?   :meth:`Defense.privacy_rows`, called per round by both server stacks (Message API:
                            ``fedsim.server.defense_wiring.DefenseTap``; SecAgg+: ``fedsim.server.secagg``)
what does loading refuse?   :meth:`Defense.check` (one-line ``ConfigError`` naming the key)
what does a capture hold?   :meth:`Defense.record` (its settings under their config keys, in every
                            ``ClientUpdate.defenses``, a :class:`DefenseRecord`, and attack row)
what does it change else?   :attr:`Defense.hides_train_loss`, :attr:`Defense.equal_weights`,
                            :attr:`Defense.aggregate_only`
==========================  ==================================================================================
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

if TYPE_CHECKING:
    from fedsim.core.accounting import Spent
    from fedsim.core.rows import PrivacyRow

#: delta at which central / local DP epsilon is reported (local DP: the mod's own delta sets the noise)
PRIVACY_DELTA = 1e-5


def opt(default: Any, *, choices: tuple[str, ...] | None = None, minimum: float | None = None,
        maximum: float | None = None, doc: str = "", listed: bool = False) -> Any:
    """A config field with validation metadata (same metadata as ``fedsim.core.config.opt``; ``listed``: a list
    key, a TOML array or a comma-separated string)."""
    return field(default=default, metadata={"choices": choices, "min": minimum, "max": maximum, "doc": doc,
                                            "list": listed})


def sampled_clients(cfg: Any) -> int:
    """Clients Flower's FedAvg samples per round: ``max(int(n * fraction), min_train_nodes)`` (central DP's
    cohort m, SecAgg+'s cohort)."""
    return max(int(cfg.run.num_clients * cfg.train.fraction_train), cfg.train.min_train_nodes)


class ApplierKind(str, enum.Enum):
    """Where an :class:`Applier` runs."""

    CLIENT_MOD = "client_mod"  # a Flower client mod on the ClientApp (fedsim.clients.mods)
    STRATEGY = "strategy"  # a Message-API strategy wrapper on the ServerApp (fedsim.server.defense_wiring)
    WORKFLOW = "workflow"  # a server workflow that drives the rounds itself (fedsim.server.app)
    TRAINING_HOOK = "training_hook"  # wraps local training inside train() (registry.train_defended)


CLIENT_MOD, STRATEGY, WORKFLOW, TRAINING_HOOK = ApplierKind

#: local training, the thing a training hook wraps: ``train(model, x, y, *, step_loss, **kw) -> (LocalResult,
#: privacy metrics)``; ``kw`` are ``fedsim.core.training.train_locally``'s keywords (``seed``, ``lr``, ...)
Train = Callable[..., tuple[Any, dict]]
#: a training hook: ``hook(table, inner) -> train``, the defense's training around ``inner`` (or instead of it)
TrainingHook = Callable[[Any, Train], Train]


@dataclass(frozen=True)
class Applier:
    """What applies a defense. ``name`` is a key of the shell's table for ``kind`` or a ``"module:attr"`` string
    (a Flower mod / strategy wrapper factory / training hook, imported with importlib where it is resolved).
    A training hook of the core carries its function in ``hook``. Appliers of one kind run in the order of
    ``position``, outermost (smallest) first: client mods SecAgg+ 10, LocalDpMod 20, fixedclipping_mod 30, update
    defenses 40, anything else 50 by default, ``[defense.custom]`` 60; training hooks: the loss (10) around
    DP-SGD's optimiser (50)."""

    kind: ApplierKind
    name: str
    position: int = 50
    hook: TrainingHook | None = field(default=None, compare=False, repr=False)


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


def training_hook(applier: Applier) -> TrainingHook:
    """The function of a training-hook applier: its own ``hook``, else its ``module:attr`` name imported."""
    return applier.hook if applier.hook is not None else resolve(applier.name, {}, "training hook")


@dataclass(frozen=True)
class RoundRelease:
    """One round as a server stack saw it, for :meth:`Defense.privacy_rows`: ``released`` rounds aggregated so
    far (this one included when ``aggregated``; a lost round releases nothing) and the epsilons the replies
    reported (DP-SGD clients)."""

    server_round: int
    released: int
    aggregated: bool
    client_epsilons: tuple[float, ...] = ()


def spent_rows(spent: list[Spent], server_round: int) -> list[PrivacyRow]:
    """``PrivacyRow``s of what mechanisms spent (with their relation, when stated)."""
    from fedsim.core.rows import PRIVACY_FORMAT, PrivacyRow

    rows = []
    for s in spent:
        r = s.relation
        rows.append(PrivacyRow(round=server_round, epsilon=s.epsilon, delta=s.delta, accountant=s.accountant,
                               mechanism=s.mechanism, time=time.time(),
                               **({} if r is None else dict(format=PRIVACY_FORMAT, unit=r.unit,
                                                            relation=r.relation, sensitivity=r.sensitivity))))
    return rows


class Defense:
    """One ``[defense.<table>]`` (see the module docstring). Subclass it in a module of its own, set ``table`` and
    ``schema``, override what differs from the defaults, and add one line to
    ``fedsim.core.defense.registry.BUILTIN`` (or call ``fedsim.core.defense.registry.register``)."""

    table: str = ""
    schema: type = object
    dp: bool = False  # a differential-privacy mechanism (its settings go on the report's "Configured:" line)
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

    def spent(self, cfg: Any, t: Any, rounds: int, delta: float, client_examples: int | None) -> list[Spent]:
        """``fedsim.core.accounting.Spent`` of the mechanism over ``rounds`` aggregated rounds (asked only when on)."""
        return []

    def privacy_rows(self, cfg: Any, t: Any, rnd: RoundRelease) -> list[PrivacyRow]:
        """The privacy rows the server writes for this round (asked only when on; none by default)."""
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


class _ReadOnly(Mapping[str, Any]):
    """A read-only mapping over a copy of ``items``."""

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._items = dict(items or {})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class DefensesInForce(_ReadOnly):
    """The defenses in force, read-only: table name -> its config record, in registry order."""

    def __repr__(self) -> str:
        return f"DefensesInForce({', '.join(self._items) or 'none'})"


class DefenseRecord(_ReadOnly):
    """``ClientUpdate.defenses``: every defense setting the server knows. As a mapping it is the record as
    captures and rows store it (config key -> value, ``Defense.record``); typed, :meth:`table` /
    :attr:`in_force` give each defense's config record (its schema dataclass), read back by the defense objects."""

    @classmethod
    def of(cls, value: Mapping[str, Any] | None) -> DefenseRecord:
        return value if isinstance(value, DefenseRecord) else cls(value)

    def __repr__(self) -> str:
        return f"DefenseRecord({self._items!r})"

    def table(self, name: str) -> Any | None:
        """``[defense.<name>]`` as recorded (its schema dataclass, on or off), None when absent or unregistered."""
        d = REGISTERED.get(name)
        return None if d is None else d.from_record(self._items)

    @property
    def in_force(self) -> DefensesInForce:
        """The recorded defenses that are on, by table (registry order)."""
        tables = {}
        for d in REGISTERED.values():
            t = d.from_record(self._items)
            if t is not None and d.on(t):
                tables[d.table] = t
        return DefensesInForce(tables)


#: table -> its defense, in registry order: filled by ``fedsim.core.defense.registry`` (``BUILTIN``, ``register``),
#: which this package's ``__init__`` imports, so it is filled before any module of the package is used
REGISTERED: dict[str, Defense] = {}
