"""Ground-truth audit channel: what each client really trained on, per round and local step.

Written by the simulated client straight to ``<run>/audit/`` (never through the Flower reply), read only by
scoring. Attack code must never import this module's readers; a test enforces it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file, safe_open

from fedsim.types import GroundTruth


def audit_path(run_dir: str | Path, server_round: int, client_id: int) -> Path:
    return Path(run_dir) / "audit" / f"round_{server_round:04d}" / f"client_{client_id:04d}.safetensors"


def write_ground_truth(run_dir: str | Path, truth: GroundTruth) -> Path:
    path = audit_path(run_dir, truth.server_round, truth.client_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = [len(y) for y in truth.labels]
    tmp = path.with_suffix(".tmp")
    save_file({"inputs": torch.cat(truth.inputs).contiguous(), "labels": torch.cat(truth.labels).contiguous()},
              str(tmp), metadata={"step_sizes": json.dumps(sizes)})
    tmp.replace(path)
    return path


def read_ground_truth(run_dir: str | Path, server_round: int, client_id: int) -> GroundTruth:
    path = audit_path(run_dir, server_round, client_id)
    with safe_open(str(path), framework="pt") as fh:
        sizes = json.loads(fh.metadata()["step_sizes"])
    data = load_file(str(path))
    return GroundTruth(server_round, client_id, tuple(data["inputs"].split(sizes)), tuple(data["labels"].split(sizes)))
