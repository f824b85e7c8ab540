"""``package.module:attr`` references (the form Flower uses for its apps) and the ``<section>.options`` tables.

A user's model factory (``model.name``) and data loader (``data.dataset``) are named this way. The module must
be importable in **every** process of a run (the ``fedsim`` process, Flower's ServerApp, every ClientApp, the
attack workers): installed in the environment, or on ``PYTHONPATH`` (the lab runner passes its environment to the
Flower processes, which pass it on). fedsim never edits ``sys.path``: a module beside a config, or in the folder
``fedsim`` runs in, is not imported unless ``PYTHONPATH`` names its folder. A config is code: every
``module:attr`` it names (and every ``attack.plugins`` module) is imported when it is loaded; :func:`config_code`
lists them (``fedsim check`` prints that list first).

Options: ``[model.options]`` / ``[data.options]`` / ``[defense.custom.options]`` are tables of bool/int/float/str
values (Flower's run-config types). Flower refuses a run-config key that ``pyproject.toml`` does not declare, so the
tables travel as one declared string key, ``model.options = '{"hidden": 64}'`` (canonical JSON, sorted keys):
:func:`fold_options` folds ``model.options.<key>`` keys (a TOML table, ``--set model.options.hidden=64``) into it.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from fedsim.core.errors import ConfigError
from fedsim.core.lists import array_text, comma_list

OPTION_SECTIONS = ("model", "data", "defense.custom")
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
#: keys whose value may name code to import: ``module:attr`` references, or (``attack.plugins``) module names
REF_KEYS = ("model.name", "data.dataset", "defense.custom.mods", "defense.custom.strategy_wrappers")
PLUGINS_KEY = "attack.plugins"
#: the one-line hint of every failed import
PYTHONPATH_HINT = ("install it, or put its folder on PYTHONPATH (fedsim does not add the current folder; every "
                   "process of the run imports it)")


def is_ref(spec: object) -> bool:
    """``True`` for a ``package.module:attr`` reference."""
    return isinstance(spec, str) and ":" in spec


def load_object(key: str, spec: str) -> Any:
    """Import ``package.module:attr`` (dots in ``attr`` walk attributes); a one-line ``ConfigError`` naming
    ``key`` when the form is wrong, the module is not importable or it has no such attribute."""
    if not _REF.match(spec.strip()):
        raise ConfigError(f"{key}: {spec!r} is not of the form 'package.module:attr'")
    module_name, _, attr = spec.strip().partition(":")
    module = _import(key, spec, module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{key}: module {module_name!r} has no attribute {attr!r} ({spec!r})") from None
    if not callable(obj):
        raise ConfigError(f"{key}: {spec!r} is a {type(obj).__name__}, not a callable")
    return obj


def _import(key: str, spec: str, module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        raise ConfigError(f"{key}: cannot import {module_name!r} for {spec!r} (no module named {missing!r}); "
                          f"{PYTHONPATH_HINT}") from None
    except Exception as exc:  # the user's module itself raised at import
        raise ConfigError(f"{key}: importing {module_name!r} for {spec!r} raised {type(exc).__name__}: "
                          f"{_one_line(exc)}") from None


@dataclass(frozen=True)
class CodeRef:
    """Code a config makes fedsim import: the key, the value as written, the module imported."""

    key: str
    value: str
    module: str

    def line(self) -> str:
        return f"{self.key} = {self.value!r} imports module {self.module!r}"


def config_code(flat: Mapping[str, Any]) -> list[CodeRef]:
    """The modules a flat config (``section.key`` -> value, before validation) will import when loaded and run:
    every ``module:attr`` under :data:`REF_KEYS` (a comma-separated list for the custom defense keys) and every
    ``attack.plugins`` module. Registered names (``convnet``, ``mnist_subset``) import nothing of the user's."""
    refs = []
    for key in REF_KEYS:
        value = flat.get(key)
        for item in comma_list(array_text(value) if isinstance(value, str) else value):
            if is_ref(item):
                refs.append(CodeRef(key, item, item.partition(":")[0]))
    plugins = flat.get(PLUGINS_KEY)
    for name in comma_list(array_text(plugins) if isinstance(plugins, str) else plugins):
        refs.append(CodeRef(PLUGINS_KEY, name, name))
    return refs


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def options_of(key: str, text: str) -> dict[str, bool | int | float | str]:
    """The options table held (as canonical JSON) in ``<section>.options``."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a table of bool/int/float/str values ([{key}] in TOML, "
                          f"{key}.<name>=<value> with --set, or a JSON object), got {text!r}")
    for name, v in value.items():
        _check_option(f"{key}.{name}", v)
    return value


def _check_option(key: str, value: object) -> None:
    if not re.match(r"^[A-Za-z_]\w*$", key.rsplit(".", 1)[1]):
        raise ConfigError(f"{key}: an option name must be a Python identifier (it is passed as a keyword argument)")
    if not isinstance(value, (bool, int, float, str)):
        raise ConfigError(f"{key}: expected a bool, int, float or string (Flower's run-config types), got "
                          f"{type(value).__name__} {value!r}")


def fold_options(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``model.options.<name>`` keys (and a mapping or JSON string under ``model.options``) folded into one
    canonical JSON string under ``model.options``; the same for ``data.options``."""
    out: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section = next((s for s in OPTION_SECTIONS if key.startswith(f"{s}.options")), "")
        rest = key[len(section) + 1:] if section else ""
        if section in OPTION_SECTIONS and rest == "options":
            table = dict(value) if isinstance(value, Mapping) else options_of(key, value) if isinstance(
                value, str) else _bad_table(key, value)
            tables.setdefault(section, {}).update(table)
        elif section in OPTION_SECTIONS and rest.startswith("options."):
            tables.setdefault(section, {})[rest[len("options."):]] = value
        else:
            out[key] = value
    for section, table in tables.items():
        for name, value in table.items():
            _check_option(f"{section}.options.{name}", value)
        out[f"{section}.options"] = json.dumps(table, sort_keys=True) if table else ""
    return out


def _bad_table(key: str, value: object) -> dict:
    raise ConfigError(f"{key}: expected a table of bool/int/float/str values, got {type(value).__name__} {value!r}")


def override_value(key: str, text: str) -> Any:
    """A ``--set`` value for an options key read as TOML (``64`` -> int, ``true`` -> bool), else the string."""
    if ".options." not in key:
        return text
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
