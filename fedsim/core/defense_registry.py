"""The registry of defenses: one line per ``[defense.*]`` table; everything else asks it (never a table directly).

``BUILTIN`` lists the built-in defenses (``fedsim.core.defense_builtin``) in the order their sweep labels and privacy
rows are listed. :func:`register` adds one more (its own table, schema and applier) from any code: its table
becomes part of ``[defense]`` (``defense.<table>.<key>`` in ``from_flat``, in every capture's ``defenses``, in the
report and in sweep labels) through :func:`section_class`. What applies a defense is resolved in the Flower
shells (``fedsim.clients.mods``, ``fedsim.server.defense_wiring``, ``fedsim.server.app``), since the core never imports Flower.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping

from fedsim.core.accounting import Spent
from fedsim.core.defense_builtin import CENTRAL_DP, DP_SGD, LOCAL_DP, SECAGG, TRAINING, UPDATE
from fedsim.core.defense_config import DefenseSection
from fedsim.core.defense_custom import CUSTOM
from fedsim.core.defense_object import Applier, Defense, DefensesInForce

BUILTIN: tuple[Defense, ...] = (
    DP_SGD,  # [defense.dp_sgd]      training hook (Opacus)
    CENTRAL_DP,  # [defense.central_dp]  strategy wrapper (+ fixedclipping_mod)
    LOCAL_DP,  # [defense.local_dp]    client mod (LocalDpMod)
    UPDATE,  # [defense.update]      client mod (update_defense_mod)
    TRAINING,  # [defense.training]    training hook (smoothing / mixup)
    SECAGG,  # [defense.secagg]      client mods + server workflow (SecAgg+)
    CUSTOM,  # [defense.custom]      your Flower client mods / strategy wrappers (fedsim.core.defense_custom)
)

_REGISTRY: dict[str, Defense] = {d.table: d for d in BUILTIN}
_SECTION: list[type] = [DefenseSection]


def registered() -> tuple[Defense, ...]:
    """Every defense, in registry order."""
    return tuple(_REGISTRY.values())


def get(table: str) -> Defense:
    return _REGISTRY[table]


def register(defense: Defense) -> Defense:
    """Add a defense with its own ``[defense.<table>]`` (its ``schema`` a frozen dataclass of ``opt`` fields)."""
    if not defense.table.isidentifier() or defense.table in _REGISTRY:
        raise ValueError(f"defense table {defense.table!r}: not a name, or already registered "
                         f"({', '.join(_REGISTRY)})")
    if not (dataclasses.is_dataclass(defense.schema) and defense.schema.__dataclass_params__.frozen):
        raise ValueError(f"[defense.{defense.table}]: schema {defense.schema!r} is not a frozen dataclass")
    _REGISTRY[defense.table] = defense
    _rebuild_section()
    return defense


def unregister(table: str) -> None:
    """Remove a registered (non-built-in) defense."""
    if any(d.table == table for d in BUILTIN):
        raise ValueError(f"[defense.{table}] is built in")
    _REGISTRY.pop(table, None)
    _rebuild_section()


def _rebuild_section() -> None:
    extra = [d for d in _REGISTRY.values() if d not in BUILTIN]
    if not extra:
        _SECTION[0] = DefenseSection
        return
    cls = dataclasses.make_dataclass(
        "DefenseSection", [(d.table, d.schema, dataclasses.field(default_factory=d.schema)) for d in extra],
        bases=(DefenseSection,), frozen=True)
    cls.__module__, cls.__qualname__ = __name__, "ExtendedDefenseSection"  # picklable while registered
    globals()["ExtendedDefenseSection"] = cls
    _SECTION[0] = cls


def section_class() -> type:
    """The ``[defense]`` section's dataclass: ``DefenseSection`` plus one field per registered extra table."""
    return _SECTION[0]


def _tables(section: Any) -> Iterator[tuple[Defense, Any]]:
    for d in _REGISTRY.values():
        t = getattr(section, d.table, None)
        if t is not None:
            yield d, t


def active(section: Any) -> list[tuple[Defense, Any]]:
    """(defense, its table) of every defense in force in ``section`` (``cfg.defense``), registry order."""
    return [(d, t) for d, t in _tables(section) if d.on(t)]


def in_force(section: Any) -> DefensesInForce:
    return DefensesInForce({d.table: t for d, t in active(section)})


def record(section: Any) -> dict[str, Any]:
    """Every defense setting by its config key (``defense.dp_sgd.enabled``): what captures and rows record."""
    out: dict[str, Any] = {}
    for d, t in _tables(section):
        out.update(d.record(t))
    return out


def in_force_from_record(flat: Mapping[str, Any]) -> DefensesInForce:
    """The defenses in force according to a recorded ``defenses`` mapping (a capture, a row)."""
    tables = {}
    for d in _REGISTRY.values():
        t = d.from_record(flat)
        if t is not None and d.on(t):
            tables[d.table] = t
    return DefensesInForce(tables)


def describe(section: Any) -> tuple[str, str]:
    """(label in words, family) of the defenses in force: "DP-SGD sigma 0.5 + top-k 1%", or "no defense"."""
    parts = [p for d, t in active(section) for p in d.parts(t)]
    if not parts:
        return "no defense", "no defense"
    return " + ".join(p[0] for p in parts), " + ".join(p[1] for p in parts)


def check_defenses(cfg: Any, config_error: type[Exception]) -> None:
    """Each defense in force refuses, in one line, what it cannot honour (SecAgg+ bounds, DP-SGD + BatchNorm)."""
    for d, _ in active(cfg.defense):
        d.check(cfg, config_error)


def spent_for_config(cfg: Any, rounds_aggregated: int, delta: float = 1e-5,
                     client_examples: int | None = None) -> list[Spent]:
    """What each DP mechanism in force in ``cfg`` spent over ``rounds_aggregated`` rounds (every client in every
    round). DP-SGD needs the client's partition size ``client_examples`` (``q = B / n``); central and local DP are
    reported at ``delta``."""
    return [s for d, t in active(cfg.defense) for s in d.spent(cfg, t, rounds_aggregated, delta, client_examples)]


def appliers(section: Any, kind: str) -> list[tuple[Defense, Any, Applier]]:
    """(defense, table, applier) of ``kind`` for the defenses in force, by ``Applier.position`` (stable)."""
    found = [(d, t, a) for d, t in active(section) for a in d.appliers(t) if a.kind == kind]
    return sorted(found, key=lambda x: x[2].position)


def hides_train_loss(section: Any) -> bool:
    return any(d.hides_train_loss for d, _ in active(section))


def equal_weights(section: Any) -> bool:
    return any(d.equal_weights for d, _ in active(section))


def aggregate_only(section: Any) -> bool:
    return any(d.aggregate_only for d, _ in active(section))


def configured(nested: Mapping[str, Any], *, dp_only: bool = False) -> list[str]:
    """The report's lines for a config.toml's ``[defense]`` tables that are on (their keys as written); a table
    no registered defense owns is listed as written."""
    out = []
    for name, values in nested.items():
        if not isinstance(values, dict):
            continue
        d = _REGISTRY.get(name)
        if d is None:
            if not dp_only:
                params = ", ".join(f"{k} = {v}" for k, v in values.items())
                out.append(f"{name} (not a registered defense: {params})")
            continue
        t = d.from_record({f"defense.{name}.{k}": v for k, v in values.items()}) or d.schema()
        if d.on(t) and (d.dp or not dp_only):
            out.append(d.configured({k: v for k, v in values.items() if not isinstance(v, dict)}))
    return out
