"""Sinks that receive every accepted ``ClientUpdate``: the capture store and the attack hook."""

from __future__ import annotations

import logging
from pathlib import Path

from fedsim.captures import capture_path, save_update
from fedsim.config import parse_selection
from fedsim.types import ClientUpdate

log = logging.getLogger("fedsim.server")


class CaptureWriter:
    """Stream selected updates to ``<run>/captures/round_R/client_C.safetensors`` (never pickle)."""

    def __init__(self, run_dir: str | Path, rounds: str = "all", clients: str = "all") -> None:
        self.run_dir = Path(run_dir)
        self.rounds = parse_selection("capture.rounds", rounds)
        self.clients = parse_selection("capture.clients", clients)

    def selected(self, update: ClientUpdate) -> bool:
        return (self.rounds is None or update.server_round in self.rounds) and \
            (self.clients is None or update.client_id in self.clients)

    def __call__(self, update: ClientUpdate) -> None:
        if self.selected(update):
            save_update(update, capture_path(self.run_dir, update.server_round, update.client_id))

    def __repr__(self) -> str:
        return f"CaptureWriter({self.run_dir})"
