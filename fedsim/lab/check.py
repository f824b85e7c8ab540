"""``fedsim check CONFIG``: the resolved config, the preflight result and the expected disk use of the captures,
without starting Flower.

The disk figure is an estimate: captured updates (rounds of ``capture.rounds`` x the clients sampled per round
that ``capture.clients`` selects) x the model's state-dict size x 2 (the weights before and after local
training); metrics, the audit store and the report come on top.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim.config import ExperimentConfig, parse_selection


@dataclass(frozen=True)
class DiskEstimate:
    """``captures`` updates of ``model_bytes`` each, stored twice (before/after): ``total_bytes``."""

    captures: int
    model_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.captures * self.model_bytes * 2

    def line(self) -> str:
        return (f"expected capture disk use (estimate): {self.captures} captured updates x "
                f"{self.model_bytes / 1e6:.2f} MB model x 2 (before/after) = {self.total_bytes / 1e6:.1f} MB")


def captured_updates(cfg: ExperimentConfig) -> int:
    """Updates the capture selection keeps over the run (expected number when clients are sampled)."""
    if not cfg.capture.enabled:
        return 0
    n, rounds = cfg.run.num_clients, cfg.run.num_rounds
    sampled = min(n, max(int(n * cfg.train.fraction_train), cfg.train.min_train_nodes))
    sel_rounds = parse_selection("capture.rounds", cfg.capture.rounds)
    sel_clients = parse_selection("capture.clients", cfg.capture.clients)
    n_rounds = rounds if sel_rounds is None else len({r for r in sel_rounds if 1 <= r <= rounds})
    share = 1.0 if sel_clients is None else len({c for c in sel_clients if 0 <= c < n}) / n
    return math.ceil(n_rounds * sampled * share)


def model_bytes(cfg: ExperimentConfig) -> int:
    """Bytes of the global model's state dict (parameters and buffers) for this config's dataset."""
    from fedsim.experiment import make_model

    return sum(t.numel() * t.element_size() for t in make_model(cfg).state_dict().values())


def check(cfg: ExperimentConfig, run_dir: str | Path | None = None) -> DiskEstimate:
    """Run the preflight (raises a one-line ``FedsimError``) and return the capture disk estimate."""
    from fedsim.lab.preflight import preflight

    preflight(cfg, run_dir)
    return DiskEstimate(captured_updates(cfg), model_bytes(cfg) if cfg.capture.enabled else 0)


def render(cfg: ExperimentConfig, disk: DiskEstimate, fmt: str) -> str:
    """The resolved config, ``preflight: ok`` and the disk estimate as ``text`` (TOML) or ``json``."""
    if fmt == "json":
        doc: dict[str, Any] = {"valid": True, "config": cfg.to_nested(), "preflight": "ok",
                               "disk_estimate": {"captured_updates": disk.captures, "model_bytes": disk.model_bytes,
                                                 "total_bytes": disk.total_bytes, "estimate": True}}
        return json.dumps(doc, indent=2)
    from fedsim.config import to_toml

    return f"{to_toml(cfg).rstrip()}\n\n# preflight: ok\n# {disk.line()}"
