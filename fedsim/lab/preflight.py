"""Checks that run before any work starts: a config that cannot run fails in seconds with one line.

``fedsim.core.config`` validates keys, types, ranges, choices and the federation on its own (the core cannot see
the attack registries); here the lab shell adds what needs the layers above or the disk: the attack inputs
(``fedsim.evaluation.preconditions.check_attack_inputs``: method names against the ``attacks`` registries, the
generative prior and LPIPS weight files; the ServerApp calls the same function when it starts, for a bare
``flwr run .``) and whether the dataset is installed (``DatasetUnavailable`` says how to get it) — instead of
failing after ~40 s of Flower start-up, or per attack after training.
"""

from __future__ import annotations

from pathlib import Path

from fedsim.core.config import ExperimentConfig
from fedsim.evaluation.preconditions import check_attack_inputs
from fedsim.core.experiment import check_model
from fedsim.core.paths import run_dir as default_run_dir


def preflight(cfg: ExperimentConfig, run_dir: str | Path | None = None):
    """Raise a ``FedsimError`` (one line) when ``cfg`` cannot run on this machine; ``run_dir`` is where the run
    will write (default: the folder the config names), where ggl/gias look for their prior by default. Returns
    the attack plan it checked (``AttackPlan``), for the run's resolution (``fedsim.lab.runner.prepare_run_dir``)."""
    plan = check_attack_inputs(cfg, Path(run_dir) if run_dir is not None else default_run_dir(cfg))
    check_model(cfg)  # loads the dataset, builds the model once, checks its output shape (model.name)
    from fedsim.lab.tracking import check_backend

    check_backend(cfg)  # [tracking]: the backend's library is installed
    return plan
