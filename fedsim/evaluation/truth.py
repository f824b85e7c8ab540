"""Reading ground truth: the audit store written by the simulated clients, and the cohort's merged truth
under secure aggregation. The only module that reads ``<run>/audit/`` (a test enforces it)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open

from fedsim.core.runfolder import RunFolder
from fedsim.core.types import ClientUpdate, GroundTruth


def has_ground_truth(run_dir: str | Path, server_round: int, client_id: int) -> bool:
    return RunFolder(Path(run_dir)).audit_file(server_round, client_id).exists()


def read_ground_truth(run_dir: str | Path, server_round: int, client_id: int) -> GroundTruth:
    path = RunFolder(Path(run_dir)).audit_file(server_round, client_id)
    with safe_open(str(path), framework="pt") as fh:
        sizes = json.loads(fh.metadata()["step_sizes"])
    data = load_file(str(path))
    return GroundTruth(server_round, client_id, tuple(data["inputs"].split(sizes)),
                       tuple(data["labels"].split(sizes)))


def truth_for(run_dir: str | Path, update: ClientUpdate) -> GroundTruth | None:
    """Ground truth of an update: the client's own, or for a secure aggregate (``update.cohort``) every
    cohort member's batches merged in memory; None when nothing was recorded (e.g. a real deployment)."""
    cohort = update.cohort
    if not cohort:
        if not has_ground_truth(run_dir, update.server_round, update.client_id):
            return None
        return read_ground_truth(run_dir, update.server_round, update.client_id)
    truths = [read_ground_truth(run_dir, update.server_round, int(c)) for c in cohort
              if has_ground_truth(run_dir, update.server_round, int(c))]
    if not truths:
        return None
    x = torch.cat([t.all_inputs for t in truths])
    y = torch.cat([t.all_labels for t in truths])
    return GroundTruth(update.server_round, update.client_id, (x,), (y,))
