"""Ground-truth audit channel: what each client really trained on, per round and local step.

Written by the simulated client straight to ``<run>/audit/`` (never through the Flower reply). This module only
*writes*: the reader lives in ``fedsim.evaluation.truth``, the one place that reads ground truth (a test
enforces it).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from fedsim.core.runfolder import RunFolder
from fedsim.core.types import GroundTruth


def write_ground_truth(run_dir: str | Path, truth: GroundTruth) -> Path:
    path = RunFolder(Path(run_dir)).audit_file(truth.server_round, truth.client_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = [len(y) for y in truth.labels]
    tmp = path.with_suffix(".tmp")
    save_file({"inputs": torch.cat(truth.inputs).contiguous().cpu(),
               "labels": torch.cat(truth.labels).contiguous().cpu()},
              str(tmp), metadata={"step_sizes": json.dumps(sizes)})
    tmp.replace(path)
    return path
