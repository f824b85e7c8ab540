"""The run resolved once, with what only this floor can decide: the attack plan and the data spec.

``fedsim.core.resolved`` holds the record (:class:`~fedsim.core.resolved.ResolvedRun`) and the fingerprint that
vouches for a checked config; here the attack plan is built and checked (``check_attack_inputs``: method names
against the ``fedsim.attacks`` registries, prior and LPIPS files) and the public data spec worked out, once, where
the run is loaded: the lab runner (after the preflight, which hands its plan on) or the ServerApp under a bare
``flwr run .`` (:func:`for_server`). Every later process turns the saved fields back into the typed records
(:func:`attack_plan`, ``fedsim.evaluation.attacking.data_spec_of``) without a registry lookup.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from fedsim.core.config import ExperimentConfig
from fedsim.core.experiment import dataset
from fedsim.core.paths import run_dir as config_run_dir
from fedsim.core.resolved import ResolvedRun, fingerprint, in_force, load
from fedsim.core.runfolder import RunFolder


def resolve_run(cfg: ExperimentConfig, run_dir: str | Path, plan=None) -> ResolvedRun:
    """The resolution of a checked ``cfg``: ``plan`` as the preflight built it (``check_attack_inputs``), else
    built and checked here."""
    if plan is None:
        from fedsim.evaluation.preconditions import check_attack_inputs

        plan = check_attack_inputs(cfg, run_dir)
    return ResolvedRun(cfg, fingerprint(cfg), in_force(cfg), _plan_fields(plan), _data_facts(cfg, plan))


def for_server(flat: Mapping[str, Any]) -> ResolvedRun:
    """The ServerApp's run: rehydrated from ``resolved.json`` when the lab resolved this config (no check, no
    plan built), else checked and resolved here once (a bare ``flwr run .``; the ServerApp saves it)."""
    cfg, resolved = load(flat, lambda c: RunFolder(config_run_dir(c)).resolved)
    return resolved if resolved is not None else resolve_run(cfg, config_run_dir(cfg))


def attack_plan(resolved: ResolvedRun):
    """The ``fedsim.attacks.pipeline.AttackPlan`` of a resolution (its names were looked up when it was made)."""
    from fedsim.attacks.pipeline import AttackPlan

    p = dict(resolved.attack_plan)
    return AttackPlan(label_methods=tuple(p["label_methods"]), inversion=p["inversion"],
                      inversion_steps=p["inversion_steps"], max_inversion_images=p["max_inversion_images"],
                      seed=p["seed"], inversion_options=p["inversion_options"], label_options=p["label_options"])


def _plan_fields(plan) -> dict[str, Any]:
    fields = dataclasses.asdict(plan)
    fields["label_methods"] = list(plan.label_methods)
    return fields


def _data_facts(cfg: ExperimentConfig, plan) -> dict[str, Any]:
    from fedsim.evaluation.attacking import needs_public_split

    ds = dataset(cfg)
    return {"input_shape": list(ds.input_shape), "num_classes": int(ds.num_classes), "mean": list(ds.mean),
            "std": list(ds.std), "public_split": needs_public_split(plan)}
