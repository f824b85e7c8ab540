"""The registry of defenses: one line per ``[defense.*]`` table; everything else asks it (never a table directly).

``BUILTIN`` lists the built-in defenses, one module each in this package, in the order their sweep labels and
privacy rows are listed. :func:`register` adds one more (its own table, schema and appliers) from any code: its
table becomes part of ``[defense]`` (``defense.<table>.<key>`` in ``from_flat``, in every capture's ``defenses``,
in the report and in sweep labels) through :func:`section_class`. Client mods, strategy wrappers and workflows
are resolved in the Flower shells (``fedsim.clients.mods``, ``fedsim.server.defense_wiring``, ``fedsim.server.app``),
since the core never imports Flower; training hooks are resolved and called here (:func:`train_defended`), and
privacy rows asked here for both server stacks (:func:`privacy_rows`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from fedsim.core.accounting import Spent
from fedsim.core.defense.base import (REGISTERED, TRAINING_HOOK, Applier, ApplierKind, Defense, DefenseRecord,
                                      DefensesInForce, RoundRelease, training_hook)
from fedsim.core.defense.central_dp import CENTRAL_DP
from fedsim.core.defense.custom import CUSTOM
from fedsim.core.defense.dp_sgd import DP_SGD
from fedsim.core.defense.local_dp import LOCAL_DP
from fedsim.core.defense.secagg import SECAGG
from fedsim.core.defense.training import TRAINING
from fedsim.core.defense.update import UPDATE

if TYPE_CHECKING:
    from fedsim.core.rows import PrivacyRow

BUILTIN: tuple[Defense, ...] = (
    DP_SGD,  # [defense.dp_sgd]      training hook (Opacus)
    CENTRAL_DP,  # [defense.central_dp]  strategy wrapper (+ fixedclipping_mod)
    LOCAL_DP,  # [defense.local_dp]    client mod (LocalDpMod)
    UPDATE,  # [defense.update]      client mod (update_defense_mod)
    TRAINING,  # [defense.training]    training hook (smoothing / mixup)
    SECAGG,  # [defense.secagg]      client mods + server workflow (SecAgg+)
    CUSTOM,  # [defense.custom]      your Flower client mods / strategy wrappers
)

#: the order of ``[defense]``'s tables in a written config (``to_toml``, ``fedsim check``, docs/config.md), as
#: before the registry; any other table, built in or registered, follows in registry order
_TABLE_ORDER = ("update", "local_dp", "central_dp", "dp_sgd", "secagg", "training", "custom")

_REGISTRY = REGISTERED  # the one table -> defense mapping (kept in base: DefenseRecord reads it)
_REGISTRY.update({d.table: d for d in BUILTIN})


def _section_of(values: Mapping[str, Any]) -> Any:
    """Unpickle a ``[defense]`` section into this process's section class (its registered tables)."""
    return section_class()(**values)


def _reduce(section: Any) -> tuple:
    return _section_of, ({f.name: getattr(section, f.name) for f in dataclasses.fields(section)},)


def _make_section(defenses: tuple[Defense, ...]) -> type:
    """``[defense]``'s frozen dataclass: one table field per defense (its schema, its defaults)."""
    ranked = sorted(defenses, key=lambda d: (_TABLE_ORDER.index(d.table) if d.table in _TABLE_ORDER
                                             else len(_TABLE_ORDER)))
    cls = dataclasses.make_dataclass(
        "DefenseSection", [(d.table, d.schema, dataclasses.field(default_factory=d.schema)) for d in ranked],
        frozen=True, namespace={"__reduce__": _reduce, "__module__": __name__,
                                "__doc__": "Client- and server-side defenses, all off by default; see "
                                           "docs/benchmarks/defenses.md."})
    return cls


#: ``[defense]`` with the built-in tables (``section_class()`` adds the registered ones)
DefenseSection = _make_section(BUILTIN)
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
    _SECTION[0] = _make_section(registered())
    return defense


def unregister(table: str) -> None:
    """Remove a registered (non-built-in) defense."""
    if any(d.table == table for d in BUILTIN):
        raise ValueError(f"[defense.{table}] is built in")
    _REGISTRY.pop(table, None)
    _SECTION[0] = DefenseSection if registered() == BUILTIN else _make_section(registered())


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
    return DefenseRecord.of(flat).in_force


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


def privacy_rows(cfg: Any, rnd: RoundRelease) -> list[PrivacyRow]:
    """The round's privacy rows of every defense in force (``Defense.privacy_rows``), registry order: what both
    server stacks write (``fedsim.server.defense_wiring.DefenseTap``, ``fedsim.server.secagg``)."""
    return [row for d, t in active(cfg.defense) for row in d.privacy_rows(cfg, t, rnd)]


def appliers(section: Any, kind: ApplierKind) -> list[tuple[Defense, Any, Applier]]:
    """(defense, table, applier) of ``kind`` for the defenses in force, by ``Applier.position`` (stable)."""
    found = [(d, t, a) for d, t in active(section) for a in d.appliers(t) if a.kind == kind]
    return sorted(found, key=lambda x: x[2].position)


def train_defended(section: Any, model: Any, x: Any, y: Any, **kw: Any) -> tuple[Any, dict]:
    """Train ``model`` in place through the training hooks in force, outermost (smallest position) first, around
    ``fedsim.core.training.train_locally``: (``LocalResult``, privacy metrics). With none in force this is
    ``train_locally``, bit for bit."""
    from fedsim.core.training import train_locally

    def train(model: Any, x: Any, y: Any, *, step_loss: Any = None, **kw: Any) -> tuple[Any, dict]:
        return train_locally(model, x, y, step_loss=step_loss, **kw), {}

    for _, table, applier in reversed(appliers(section, TRAINING_HOOK)):
        train = training_hook(applier)(table, train)
    return train(model, x, y, **kw)


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


#: keys of the old flat ``[defense]`` table -> their key now
RENAMED: dict[str, str] = {
    **{f"defense.{k}": f"defense.update.{k}" for k in ("clip_norm", "noise_std", "topk_ratio", "randk_ratio",
                                                       "sparsify_scope", "quant_bits")},
    **{f"defense.{k}": f"defense.training.{k}" for k in ("label_smoothing", "mixup_alpha")},
    "defense.local_dp": "defense.local_dp.enabled",
    "defense.local_dp_clip": "defense.local_dp.clip_norm",
    "defense.local_dp_epsilon": "defense.local_dp.epsilon",
    "defense.local_dp_delta": "defense.local_dp.delta",
    "defense.central_dp": "defense.central_dp.clipping",
    "defense.central_dp_noise": "defense.central_dp.noise_multiplier",
    "defense.central_dp_clip": "defense.central_dp.clip_norm",
    "defense.dp_sgd": "defense.dp_sgd.enabled",
    "defense.dp_sgd_noise": "defense.dp_sgd.noise_multiplier",
    "defense.dp_sgd_max_grad_norm": "defense.dp_sgd.max_grad_norm",
    "defense.dp_sgd_delta": "defense.dp_sgd.delta",
    "defense.secagg": "defense.secagg.enabled",
}
REMOVED: dict[str, str] = {
    "defense.secagg_mask_scale": "removed: Flower's SecAgg+ masks are uniform modulo defense.secagg.modulus_range",
}


def renamed_key_error(key: str) -> str | None:
    """The one-line error for an old flat ``[defense]`` key, or None."""
    if key in RENAMED:
        return f"{key}: [defense] has one table per mechanism now; use {RENAMED[key]}"
    if key in REMOVED:
        return f"{key}: {REMOVED[key]}"
    return None
