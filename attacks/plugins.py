"""Your own attack methods: plugin modules that register label / inversion records when imported.

``attack.plugins = "mylab.attacks,other.pkg"`` names modules to import; each calls
``fedsim.attacks.labels.register_label_method(AttackMethod(...))`` or ``fedsim.attacks.inversion.register_inversion_method``
at import. Installed packages can declare the same in the ``fedsim.attacks`` entry-point group (``[project.
entry-points."fedsim.attacks"] mylab = "mylab.attacks"``, or ``"mylab.attacks:register"``: a callable is called
once). :func:`load_plugins` runs before any method name is looked up, in every process that looks one up:
``fedsim.evaluation.attacking.plan_from_config`` (preflight, the ServerApp's start, replay, sweeps) and
``attack_and_score`` in each spawned attack worker. Importing twice is harmless (a module is imported once per
process; an entry point's callable is called once per process).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from fedsim.core.errors import ConfigError
from fedsim.core.lists import comma_list
from fedsim.core.objref import PYTHONPATH_HINT

KEY, GROUP = "attack.plugins", "fedsim.attacks"
_LOADED: set[str] = set()


def plugin_names(text: str) -> list[str]:
    """The module names of ``attack.plugins`` (a list or comma-separated, blanks left out)."""
    return list(comma_list(text))


def load_plugins(text: str = "") -> list[str]:
    """Import the ``fedsim.attacks`` entry points and the modules of ``attack.plugins``; returns what was loaded
    this call. A module that does not import, or raises, is a one-line ``ConfigError`` naming the key."""
    done = [_load_entry_point(ep) for ep in entry_points(group=GROUP) if f"ep:{ep.name}" not in _LOADED]
    for name in plugin_names(text):
        if name not in _LOADED:
            _import(name)
            _LOADED.add(name)
            done.append(name)
    return [d for d in done if d]


def _import(name: str) -> None:
    if not all(part.isidentifier() for part in name.split(".")):
        raise ConfigError(f"{KEY}: {name!r} is not a module name (comma-separated 'package.module' names)")
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:  # sys.path is never edited here (a config is code: see fedsim.core.objref)
        raise ConfigError(f"{KEY}: cannot import {name!r} (no module named {exc.name!r}); {PYTHONPATH_HINT}"
                          ) from None
    except ConfigError:
        raise
    except Exception as exc:  # the plugin itself raised (a name already registered, a bad record)
        text = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{KEY}: importing {name!r} raised {type(exc).__name__}: {text}") from None


def _load_entry_point(ep) -> str:
    _LOADED.add(f"ep:{ep.name}")
    try:
        obj = ep.load()
        if callable(obj):
            obj()
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{GROUP} entry point {ep.name!r} ({ep.value}) raised {type(exc).__name__}: {text}"
                          ) from None
    return f"{ep.name} ({ep.value})"
