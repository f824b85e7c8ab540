"""Sweep files: the settings (each a set of config overrides with a label in words), the seeds, the extra attacks.

Two forms. One swept key or several keys swept together (every setting is labelled from its keys)::

    [sweep]
    base = "defense_fedsgd.toml"          # a preset, relative to the sweep file (optional)
    parameters = ["defense.dp_sgd.enabled", "defense.dp_sgd.noise_multiplier"]
    values = [[false, 0.0], [true, 0.5]]  # weakest -> strongest defense
    seeds = [0, 1, 2]                     # run.seed of each replicate (default: the base's run.seed)

Or one table per setting (a cross-defense comparison; ``family`` groups points into one curve)::

    [[sweep.settings]]
    family = "DP-SGD"
    set = { "defense.dp_sgd.enabled" = true, "defense.dp_sgd.noise_multiplier" = 0.5, "train.lr" = 0.3 }
    replay = ["ggl"]                      # extra inversion methods replayed on the captures (fedsim attack)
    label = "DP-SGD sigma 0.5"            # optional: default from the keys (describe)

``[sweep] ray = "auto"`` (or a ``[sweep.ray]`` table: ``address``, ``num_cpus``, ``num_gpus``, ``memory_gb``,
``simulation``; ``fedsim sweep --ray`` overrides the address) runs each federation as a Ray task on a cluster
(:mod:`~.ray_pool`). ``[sweep] replay = [...]`` applies to every setting;
``[sweep] reference = { label_lnacc = 0.35, psnr = 10.0 }``
draws chance levels on the frontier. Any other section of the sweep file overrides the base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.core.config import ConfigError, ExperimentConfig, flatten, from_flat, read_toml
from fedsim.core.defense import registry as defense_registry
from fedsim.lab.sweep.ray_pool import RaySpec, ray_spec


@dataclass(frozen=True)
class Setting:
    index: int
    overrides: dict[str, Any]
    label: str
    family: str
    replay: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sweep:
    name: str
    base: ExperimentConfig
    settings: tuple[Setting, ...]
    label: str
    seeds: tuple[int, ...] = (0,)
    delta: float = 1e-5  # delta at which central and local DP epsilon is reported
    parameters: tuple[str, ...] = field(default=())
    reference: dict[str, float] = field(default_factory=dict)  # chance levels drawn on the frontier (label_lnacc, psnr)
    ray: RaySpec | None = None  # federations as Ray tasks on a cluster (ray_pool); None: the local thread pool

    def config(self, setting: Setting, seed: int) -> ExperimentConfig:
        return self.base.replace(**setting.overrides, **{"run.seed": seed,
                                                         "run.name": f"{self.name}_{setting.index:02d}_s{seed}"})


def describe(cfg: ExperimentConfig) -> tuple[str, str]:
    """(label in words, family) of the defenses in force in ``cfg``: "DP-SGD sigma 0.5", "top-k 1%", ... (each
    defense describes itself: ``fedsim.core.defense.registry.describe``)."""
    return defense_registry.describe(cfg.defense)


#: swept keys outside [defense] that name a setting (tuning keys such as train.lr do not)
OTHER_KEYS = {"train.batch_size": "batch", "train.local_epochs": "local epochs", "train.algorithm": "",
              "run.num_clients": "clients", "model.width": "width", "data.partition": "partition"}


def _label(cfg: ExperimentConfig, overrides: dict[str, Any]) -> tuple[str, str]:
    label, family = describe(cfg)
    extra = [f"{OTHER_KEYS[k]} {v}".strip() for k, v in overrides.items() if k in OTHER_KEYS]
    if not extra:
        return label, family
    text = ", ".join(extra)
    if label == "no defense":
        return text, ", ".join(OTHER_KEYS[k] or k for k in overrides if k in OTHER_KEYS)
    return f"{label}, {text}", family


def _settings(path: Path, spec: dict, base: ExperimentConfig) -> tuple[tuple[Setting, ...], tuple[str, ...]]:
    common = tuple(spec.get("replay", ()))
    if "settings" in spec:
        tables = spec["settings"]
        if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
            raise ConfigError(f"{path}: [[sweep.settings]] must be tables with a 'set' table of overrides")
        raw = [(dict(flatten(t.get("set", {}))), t) for t in tables]
        params: tuple[str, ...] = ()
    elif "parameters" in spec or "parameter" in spec:
        params = tuple(spec["parameters"]) if "parameters" in spec else (spec["parameter"],)
        values = [tuple(v) if "parameters" in spec else (v,) for v in spec.get("values", [])]
        if not values or any(len(v) != len(params) for v in values):
            raise ConfigError(f"{path}: each setting needs one value per parameter {params}")
        raw = [(dict(zip(params, v)), {}) for v in values]
    else:
        raise ConfigError(f"{path}: [sweep] needs 'parameter', 'parameters' or [[sweep.settings]]")
    out = []
    for i, (overrides, table) in enumerate(raw):
        cfg = base.replace(**overrides)  # validates every setting up front, not after an hour of runs
        label, family = _label(cfg, overrides)
        out.append(Setting(i, overrides, str(table.get("label", label)), str(table.get("family", family)),
                           common + tuple(table.get("replay", ()))))
    return tuple(out), params


def base_file(path: Path, base: str) -> Path:
    """A sweep's ``base``: relative to the sweep file, else to the current folder, else a packaged preset's name
    (``fedsim.lab.presets``); as given when none exists (``read_toml`` then says it does not)."""
    from fedsim.lab.presets import find

    for candidate in ((path.parent / base).resolve(), Path(base).resolve()):
        if candidate.exists():
            return candidate
    return find(base) or Path(base).resolve()


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None, ray: str | None = None) -> Sweep:
    """The sweep file (or a packaged sweep's name) with ``overrides`` (``--set``) on its base; ``ray``: ``--ray``'s
    address (wins over the file's ``[sweep] ray``)."""
    from fedsim.lab.presets import resolve

    path = resolve(path)  # a path, or a packaged sweep's name (sweep_dp)
    nested = read_toml(path, "sweep file")
    spec = nested.pop("sweep", None)
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: needs a [sweep] section with parameter(s) and values, or [[sweep.settings]]")
    flat: dict[str, Any] = {}
    if spec.get("base"):
        flat.update(flatten(read_toml(base_file(path, spec["base"]), "sweep base")))
    flat.update(flatten(nested))
    flat.update(overrides or {})
    base = from_flat(flat)
    settings, params = _settings(path, spec, base)
    seeds = tuple(int(s) for s in spec.get("seeds", [base.run.seed]))
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}: [sweep] seeds must be distinct integers, got {spec.get('seeds')}")
    from fedsim.evaluation.attacking import plan_from_config

    for s in settings:
        for method in s.replay:  # a typo in a replayed method fails here, once
            plan_from_config(base.replace(**s.overrides, **{"attack.inversion": method}))
    return Sweep(spec.get("name", path.stem), base, settings, spec.get("label", ", ".join(params) or "defense"),
                 seeds, float(spec.get("delta", 1e-5)), params,
                 {k: float(v) for k, v in dict(spec.get("reference", {})).items()},
                 ray_spec(spec.get("ray"), str(path), ray))
