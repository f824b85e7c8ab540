"""One TOML schema for every experiment.

Presets are TOML files with sections (``[run]``, ``[data]``, ...). Flower flattens them to dotted keys
(``train.lr``) in ``context.run_config``; :func:`from_flat` turns that flat mapping back into an
:class:`ExperimentConfig`, rejecting unknown keys and bad values with the key name and the valid choices.
Only bool/int/float/str values are allowed (Flower's run-config types); lists are comma-separated strings.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from fedsim.core.config_sections import (  # noqa: F401  (the tables' fields; re-exported)
    AttackSection, CaptureSection, DataSection, FaultsSection, ModelSection, RunSection, Scalar, TrackingSection,
    TrainSection, ValidationSection, opt)
from fedsim.core.errors import ConfigError  # noqa: F401  (re-exported: `from fedsim.core.config import ConfigError`)
from fedsim.core.defense.registry import DefenseSection, renamed_key_error  # (one table each)
from fedsim.core.defense.registry import check_defenses, section_class  # (registered defenses)
from fedsim.core.config_checks import ATTACKED, check_federation, parse_selection
from fedsim.core.objref import fold_options, is_ref, override_value  # (module:attr, [model.options])
from fedsim.core.lists import list_value  # a list key: a TOML array or a comma-separated string
from fedsim.core.suggest import did_you_mean, nearby_paths, one_key_per_set  # "did you mean"


SECTIONS: dict[str, type] = {
    "run": RunSection,
    "data": DataSection,
    "model": ModelSection,
    "train": TrainSection,
    "capture": CaptureSection,
    "attack": AttackSection,
    "defense": DefenseSection,
    "faults": FaultsSection,
    "validation": ValidationSection,
    "tracking": TrackingSection,
}


@dataclass(frozen=True)
class ExperimentConfig:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    capture: CaptureSection = field(default_factory=CaptureSection)
    attack: AttackSection = field(default_factory=AttackSection)
    defense: DefenseSection = field(default_factory=lambda: section_class()())  # + registered tables
    faults: FaultsSection = field(default_factory=FaultsSection)
    validation: ValidationSection = field(default_factory=ValidationSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)

    def to_flat(self) -> dict[str, Scalar]:
        """Dotted keys (``train.lr``, ``defense.dp_sgd.enabled``) as Flower's run config holds them."""
        return flatten(self.to_nested())

    def to_nested(self) -> dict[str, dict[str, Scalar]]:
        return {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}

    def replace(self, **flat: Any) -> "ExperimentConfig":
        """A copy with some dotted keys changed (validated)."""
        merged = self.to_flat()
        merged.update(flat)
        return from_flat(merged)


def _coerce(key: str, value: Any, f: dataclasses.Field) -> Scalar:
    if f.metadata.get("list"):  # an array is kept as its comma-separated string (Flower's run config: scalars)
        value = list_value(key, value)
    expected = f.type if isinstance(f.type, type) else {"str": str, "int": int, "float": float, "bool": bool}[f.type]
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (
                isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if expected is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _validate(key: str, value: Scalar, f: dataclasses.Field) -> None:
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"] and not (meta.get("refs") and is_ref(value)):
        more = " or a 'package.module:attr'" if meta.get("refs") else ""
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(meta['choices'])}{more}"
                          f"{did_you_mean(value, meta['choices'])}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"{key}: {value!r} is below the minimum {meta['min']}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(f"{key}: {value!r} is above the maximum {meta['max']}")


def from_flat(flat: Mapping[str, Any], check: bool = True) -> ExperimentConfig:
    """Build and validate a config from dotted keys; unknown keys fail with the list of valid ones.

    ``check=False`` coerces and validates each key but skips the cross-section checks (module:attr imports,
    Opacus, faults, the device): for a config already checked where the run was loaded
    (``fedsim.core.resolved.rehydrate``, which says when that may be skipped)."""
    per_section: dict[str, dict[str, Scalar]] = {s: {} for s in SECTIONS}
    for key, value in fold_options(flat).items():  # [model.options] / [data.options] -> one JSON string each
        section, _, name = key.partition(".")
        if section not in SECTIONS:
            raise ConfigError(f"{key}: unknown section {section!r}; valid sections: {', '.join(SECTIONS)}"
                              f"{did_you_mean(key, [f'{s}.{name}' for s in SECTIONS])}")
        by_name = _leaf_fields(_section(section))
        if name not in by_name:
            raise ConfigError(renamed_key_error(key) or _unknown_key(key, section, by_name))
        coerced = _coerce(key, value, by_name[name])
        _validate(key, coerced, by_name[name])
        per_section[section][name] = coerced
    cfg = ExperimentConfig(**{s: _build(_section(s), values) for s, values in per_section.items()})
    if check:
        _check_cross_section(cfg)
    return cfg


def check_config(cfg: ExperimentConfig) -> None:
    """The full check of a config (the cross-section checks :func:`from_flat` runs unless ``check=False``)."""
    _check_cross_section(cfg)


def _section(name: str) -> type:
    """A section's dataclass; ``[defense]`` has one table per registered defense (``fedsim.core.defense.registry``)."""
    return section_class() if name == "defense" else SECTIONS[name]


def _unknown_key(key: str, section: str, by_name: Mapping[str, Any]) -> str:
    """'unknown key' naming the valid keys of the innermost table that the key names."""
    table = section
    names = list(by_name)
    head = key.split(".")[1] if key.count(".") >= 2 else ""
    if head and any(n.startswith(head + ".") for n in names):
        table = f"{section}.{head}"
        names = [n[len(head) + 1:] for n in names if n.startswith(head + ".")]
    return (f"{key}: unknown key; valid keys in [{table}]: {', '.join(names)}"
            f"{did_you_mean(key, [f'{section}.{n}' for n in by_name])}")


def _table(f: dataclasses.Field) -> type | None:
    """The dataclass of a nested table field (``[defense.dp_sgd]``), else None."""
    factory = f.default_factory
    return factory if factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory) else None


def _leaf_fields(cls: type, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Dotted names (relative to the section) of every scalar field, nested tables included."""
    out: dict[str, dataclasses.Field] = {}
    for f in fields(cls):
        sub = _table(f)
        if sub is None:
            out[prefix + f.name] = f
        else:
            out.update(_leaf_fields(sub, f"{prefix}{f.name}."))
    return out


def _build(cls: type, values: Mapping[str, Scalar]) -> Any:
    """Instantiate a section (and its nested tables) from dotted names relative to it."""
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        sub = _table(f)
        if sub is None:
            if f.name in values:
                kwargs[f.name] = values[f.name]
        else:
            head = f.name + "."
            kwargs[f.name] = _build(sub, {k[len(head):]: v for k, v in values.items() if k.startswith(head)})
    return cls(**kwargs)


def _check_cross_section(cfg: ExperimentConfig) -> None:
    """The checks that need torch (the dataset registry, a CUDA device) come last, so that every other config
    error is reported without importing it (``fedsim run``/``check`` answer in ~0.1 s instead of ~2 s)."""
    _check_run_name(cfg.run.name)
    for key, text in (("capture.rounds", cfg.capture.rounds), ("capture.clients", cfg.capture.clients),
                      ("attack.rounds", cfg.attack.rounds), ("attack.clients", cfg.attack.clients)):
        if text.strip().lower() != ATTACKED:  # capture.* = 'attacked': the attack.* selection (checked as such)
            parse_selection(key, text)
    from fedsim.core.faults_spec import parse_faults

    check_federation(cfg)  # min_train_nodes vs num_clients; attack/capture selections that select nothing

    parse_faults(cfg.faults)
    check_defenses(cfg, ConfigError)  # imports torch only for defense.dp_sgd (Opacus' model check)
    from fedsim.core.references import check_references

    check_references(cfg)  # data.dataset against the registry (imports torch), module:attr references importable
    _check_device(cfg.run.device)


def _check_run_name(name: str) -> None:
    """``run.name`` names the folder ``runs/<name>``: a plain name, never a path out of ``runs/``."""
    if not name.strip() or any(c in name for c in "/\\\0") or ".." in name or name.strip() == ".":
        raise ConfigError(f"run.name: {name!r} is not a plain name (not empty, no '/', '\\' or '..'; it names "
                          "the folder runs/<name>); set run.out_dir or --out for a folder elsewhere")


def _check_device(spec: str) -> None:
    """``run.device`` must name a device this machine has (``auto`` and ``cpu`` always do: no torch import)."""
    if isinstance(spec, str) and spec.strip().lower() in ("auto", "cpu"):
        return
    from fedsim.core.device import resolve_device

    try:
        resolve_device(spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in nested.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file; a missing file or bad syntax is a one-line ``ConfigError``."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a TOML file (e.g. configs/smoke.toml)")
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist{did_you_mean(path, nearby_paths(path))}") from None
    except (OSError, UnicodeDecodeError) as exc:  # unreadable, not text
        raise ConfigError(f"{what} {path} cannot be read ({type(exc).__name__}: {exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read a preset TOML (sections), apply dotted overrides, validate."""
    flat = flatten(read_toml(path))
    flat.update(overrides or {})
    return from_flat(flat)


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["train.lr=0.1", ...]`` -> ``{"train.lr": "0.1"}`` (values are coerced by :func:`from_flat`)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        hint = one_key_per_set(item)  # --set "a=1 b=2" (Flower's --run-config habit)
        if hint:
            raise ConfigError(hint)
        out[key.strip()] = override_value(key.strip(), value.strip().strip('"'))
    return out


def to_toml(cfg: ExperimentConfig) -> str:
    import tomli_w

    return tomli_w.dumps(cfg.to_nested())
