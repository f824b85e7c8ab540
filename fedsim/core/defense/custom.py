"""``[defense.custom]``: your own defense, as Flower client mods and Message-API strategy wrappers.

    [defense.custom]
    mods = "mylab.defenses:shrink_mod"            # comma-separated 'package.module:attr' Flower client mods
    strategy_wrappers = "mylab.defenses:wrap"      # comma-separated callables (strategy) -> Strategy
    [defense.custom.options]                       # read by the mods: fedsim.core.defense.custom.options(ctxt)
    factor = 0.5

**Where the mods run.** Innermost in the ClientApp's mod chain (``Applier`` position 60), right around
``train()`` and inside every built-in defense: ``secaggplus_mod -> LocalDpMod -> fixedclipping_mod ->
update_defense_mod -> your mods (in the order written) -> train()``. A mod there sees the plaintext reply of
``train()`` (weights ``W_after`` and the message's ``W_before``) and what it returns is what fedsim's own
defenses then clip, noise or mask, so a DP mechanism or SecAgg+ layered on top keeps its guarantee. Outermost
(after SecAgg+) a mod would see masked integers; between the built-ins its change would bypass their clipping.

**Where the wrappers run.** Innermost of the server's wrappers (position 45, below central DP's 50): directly
around ``DefenseTap -> CuriousStrategy``, inside ``ReplyGate`` and Flower's central-DP wrapper. A wrapper
therefore sees the validated (and, with server-side central DP, clipped) replies before the curious server
captures them, e.g. a robust aggregator that drops replies. SecAgg+ replaces the strategy stack, so wrappers
are refused with it.

**Options** are one table for the mods and the wrappers (``[defense.custom.options]``, or the JSON string
``defense.custom.options = '{"factor": 0.5}'``; sweepable as ``defense.custom.options.factor``). Flower refuses
undeclared run-config keys, so they travel as one declared JSON key; a mod reads them per message with
:func:`options` (``ctxt.run_config``), so one plain Flower mod works with and without fedsim; a wrapper whose
signature has an ``options`` parameter is called ``wrapper(strategy, options=...)`` with the same dict.

Recorded like every defense: ``defense.custom.mods`` / ``.strategy_wrappers`` / ``.options`` in every capture's
and attack row's ``defenses``; the report and sweep labels name the mods' attributes and options. A typo in any
``module:attr`` fails at load in one line naming the key (:meth:`CustomDefenseDefense.check`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from fedsim.core.defense.base import CLIENT_MOD, STRATEGY, Applier, Defense, opt
from fedsim.core.lists import comma_list
from fedsim.core.objref import load_object, options_of


@dataclass(frozen=True)
class CustomDefense:
    """``[defense.custom]``: your own Flower client mods and server strategy wrappers (this module).
    Flower's run-config values are scalars, so each list (a TOML array or a comma-separated string) is kept as one
    comma-separated string (``fedsim.core.lists``)."""

    mods: str = opt("", listed=True, doc="'package.module:attr' Flower client mods (msg, ctxt, call_next) -> "
                    "Message, run innermost (right around train(), inside fedsim's update defenses), in order")
    strategy_wrappers: str = opt("", listed=True, doc="'package.module:attr' callables (strategy) -> Strategy "
                                 "(Message API), wrapped around the curious server's stack, first innermost")
    options: str = opt("", doc="[defense.custom.options]: the mods' options (bool/int/float/str; carried as one "
                       "JSON string); a mod reads them with fedsim.core.defense.custom.options(ctxt)")


MOD_POSITION, WRAPPER_POSITION = 60, 45
MODS_KEY, WRAPPERS_KEY, OPTIONS_KEY = "defense.custom.mods", "defense.custom.strategy_wrappers", "defense.custom.options"


def names(text: str) -> list[str]:
    """The ``module:attr`` names of a list key (a list or comma-separated), blanks left out."""
    return list(comma_list(text))


def options(ctxt_or_run_config: Any) -> dict[str, bool | int | float | str]:
    """``[defense.custom.options]`` as a dict, from a Flower ``Context`` (its ``run_config``) or a run-config
    mapping; ``{}`` when none are set."""
    run_config: Mapping[str, Any] = getattr(ctxt_or_run_config, "run_config", ctxt_or_run_config)
    return options_of(OPTIONS_KEY, str(run_config.get(OPTIONS_KEY, "") or ""))


class CustomDefenseDefense(Defense):
    """``[defense.custom]``: on when it names a mod or a wrapper; its appliers are the names themselves
    (``module:attr``, imported by the Flower shells with ``fedsim.core.defense.base.resolve``)."""

    table, schema = "custom", CustomDefense

    def on(self, t: CustomDefense) -> bool:
        return bool(names(t.mods) or names(t.strategy_wrappers))

    def parts(self, t: CustomDefense) -> list[tuple[str, str]]:
        attrs = [n.rpartition(":")[2] for n in names(t.mods) + names(t.strategy_wrappers)]
        family = " + ".join(attrs)
        opts = options_of(OPTIONS_KEY, t.options)
        params = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(opts.items()))
        return [(f"{family} ({params})" if params else family, family)]

    def appliers(self, t: CustomDefense) -> tuple[Applier, ...]:
        return (tuple(Applier(CLIENT_MOD, n, MOD_POSITION) for n in names(t.mods))
                + tuple(Applier(STRATEGY, n, WRAPPER_POSITION) for n in names(t.strategy_wrappers)))

    def check(self, cfg: Any, config_error: type[Exception]) -> None:
        t = cfg.defense.custom
        for key, text in ((MODS_KEY, t.mods), (WRAPPERS_KEY, t.strategy_wrappers)):
            for name in names(text):
                load_object(key, name)  # one line naming the key: form, module, attribute, callable
        options_of(OPTIONS_KEY, t.options)
        if names(t.strategy_wrappers) and cfg.defense.secagg.enabled:
            raise config_error(f"{WRAPPERS_KEY}: cannot be combined with defense.secagg.enabled (SecAgg+'s workflow "
                               "replaces the Message-API strategy stack the wrappers wrap); use defense.custom.mods")

    def configured(self, values: Mapping[str, Any]) -> str:
        shown = {k: v for k, v in values.items() if v not in ("", None)}
        if isinstance(shown.get("options"), str):
            shown["options"] = json.loads(shown["options"])
        return super().configured(shown)


CUSTOM = CustomDefenseDefense()
