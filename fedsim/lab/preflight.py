"""Checks that run before any work starts: a config that cannot run fails in seconds with one line.

``fedsim.config`` validates keys, types, ranges and choices on its own (the core cannot see the attack
registries); here the lab shell adds what needs the layers above or the disk: attack method names against
``attacks`` registries (through the evaluation layer's plan) and whether the dataset is installed
(``DatasetUnavailable`` says how to get it) — instead of failing after ~40 s of Flower start-up.
"""

from __future__ import annotations

from fedsim.config import ExperimentConfig
from fedsim.evaluation.attacking import plan_from_config
from fedsim.experiment import dataset


def preflight(cfg: ExperimentConfig) -> None:
    """Raise a ``FedsimError`` (one line) when ``cfg`` cannot run on this machine."""
    plan_from_config(cfg)
    dataset(cfg)
