"""The run resolved once: the checked config, its attack plan, the defenses in force and the data spec, saved in
the run folder and rehydrated in every process without checking the config again.

The full check of a config (``fedsim.core.config.check_config``: federation size, selections, faults, each
defense in force with Opacus' model check, ``module:attr`` imports, the device) used to run wherever a config
was parsed: at load, in ``replace``, in the ServerApp, in every ClientApp TRAIN message and in every attack
(3 + N.R + A times a run). Now it runs once, where the run is loaded (the lab's entry points; the ServerApp
under a bare ``flwr run .``), and what it vouched for is named by a :func:`fingerprint`: the SHA-256 of the
coerced config's flat canonical JSON (each key's coercion and per-key validation is cheap and still runs:
``from_flat(check=False)``). A process whose run config has that fingerprint takes it as checked:

* the ServerApp reads ``resolved.json`` of the run folder (``RunFolder.resolved``: :class:`ResolvedRun`, written by
  the lab runner after the preflight), with the attack plan and the data spec, so it builds neither again;
* each ClientApp takes the fingerprint the ServerApp stamps in every train message's config
  (``fedsim.core.messages.RESOLVED``: a client machine may not hold the run folder) and keeps the config for the
  messages after (one per process and run config);
* each attack worker takes the fingerprint from the scheduler with the config and the plan.

A fingerprint that does not match (a config edited in between, a bare ``flwr run .``, a SecAgg+ stage whose
train config travels inside the protocol) makes that process check the config in full, once.

Own code, not a library: the resolution is a few fields of this project's own records; JSON (stdlib) keeps the
file readable next to ``config.toml``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from fedsim.core.config import ExperimentConfig, check_config, from_flat

#: format version of ``resolved.json``; a file of another version is not rehydrated (the config is checked)
VERSION = 1


def fingerprint(cfg: ExperimentConfig) -> str:
    """SHA-256 of the config's dotted keys and coerced values (canonical JSON): equal configs, equal prints,
    whatever types (``1`` / ``1.0`` / ``"1"``) the run config carried them in."""
    text = json.dumps(cfg.to_flat(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ResolvedRun:
    """What loading a run decided, once: the checked ``config`` (identified by ``fingerprint``), the ``[defense]``
    tables in force (registry order), the attack plan (``fedsim.attacks.pipeline.AttackPlan``'s fields: names
    only; built and checked by ``fedsim.evaluation.resolution``) and the public data spec (input shape, classes,
    normalisation, whether a configured method needs the public split)."""

    config: ExperimentConfig = field(compare=False, repr=False)
    fingerprint: str
    defenses: tuple[str, ...]
    attack_plan: Mapping[str, Any]
    data: Mapping[str, Any]

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, "fingerprint": self.fingerprint, "defenses": list(self.defenses),
                           "attack_plan": self.attack_plan, "data": self.data}, indent=1, sort_keys=True)

    def save(self, path: Path) -> Path:
        """Write ``resolved.json`` (``RunFolder.resolved``) atomically."""
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path

    @classmethod
    def from_json(cls, text: str, config: ExperimentConfig) -> "ResolvedRun | None":
        """The resolution of ``config`` in ``text``; None when it is of another version or another config."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(raw, dict) or raw.get("version") != VERSION or raw.get("fingerprint") != fingerprint(config):
            return None
        return cls(config, raw["fingerprint"], tuple(raw["defenses"]), raw["attack_plan"], raw["data"])


def in_force(cfg: ExperimentConfig) -> tuple[str, ...]:
    """The ``[defense.*]`` tables in force, in registry order."""
    from fedsim.core.defense.registry import in_force as registry_in_force

    return tuple(registry_in_force(cfg.defense))


def rehydrate(flat: Mapping[str, Any], vouched: str | None) -> ExperimentConfig:
    """The config of ``flat``; checked in full unless ``vouched`` is its fingerprint (a process that checked it
    said so)."""
    cfg = from_flat(flat, check=False)
    if vouched is None or vouched != fingerprint(cfg):
        check_config(cfg)
    return cfg


def load(flat: Mapping[str, Any], path_of) -> tuple[ExperimentConfig, ResolvedRun | None]:
    """The config of ``flat`` and its saved resolution: ``path_of(cfg)`` is where ``resolved.json`` lies (the run
    folder the config names). Without a matching resolution the config is checked in full here and
    ``(cfg, None)`` returned: the caller resolves the rest and saves it."""
    cfg = from_flat(flat, check=False)
    path = Path(path_of(cfg))
    resolved = ResolvedRun.from_json(path.read_text(), cfg) if path.is_file() else None
    if resolved is None:
        check_config(cfg)
    return cfg, resolved
