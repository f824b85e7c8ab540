"""Sinks that receive every accepted ``ClientUpdate``: the capture store and the attack hook.

:func:`deliver` hands one update to every sink; a sink that raises (a full disk, a read-only ``captures/``, a
broken sink) costs that sink only: the failure is a ``capture_error`` row of ``metrics.jsonl`` (shown in the
report's Failures section), the later sinks still run, and the round goes on. The attack scheduler guards itself
and writes an ``attack_error`` row when it cannot schedule an attack.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable

from fedsim.core.captures import CaptureStore
from fedsim.core.config import parse_selection
from fedsim.core.rows import CaptureErrorRow
from fedsim.core.runfolder import RunFolder
from fedsim.core.types import ClientUpdate

log = logging.getLogger("fedsim.server")

UpdateSink = Callable[[ClientUpdate], None]


class CaptureWriter:
    """Stream selected updates to ``<run>/captures/round_R/client_C.safetensors`` (never pickle); the first capture
    of a round also writes the round's global model, ``round_R/global.safetensors`` (``fedsim.core.captures``).
    ``rounds`` / ``clients``: resolved selections (``fedsim.core.capture_plan.capture_text``; not ``'attacked'``)."""

    NAME = "capture"

    def __init__(self, run_dir: str | Path, rounds: str = "all", clients: str = "all") -> None:
        self.run_dir = Path(run_dir)
        self.rounds = parse_selection("capture.rounds", rounds)
        self.clients = parse_selection("capture.clients", clients)
        self.store = CaptureStore(self.run_dir)

    def selected(self, update: ClientUpdate) -> bool:
        return (self.rounds is None or update.server_round in self.rounds) and \
            (self.clients is None or update.client_id in self.clients)

    def __call__(self, update: ClientUpdate) -> None:
        if self.selected(update):
            self.store.save(update)

    def __repr__(self) -> str:
        return f"CaptureWriter({self.run_dir})"


def sink_name(sink: UpdateSink) -> str:
    """A short name of a sink for its error row: its ``NAME`` (``capture``) or its class name."""
    return str(getattr(sink, "NAME", None) or getattr(sink, "__qualname__", None) or type(sink).__name__)


def deliver(update: ClientUpdate, sinks: Iterable[UpdateSink], folder: RunFolder | None) -> int:
    """Hand ``update`` to every sink; each failure is logged and written as a ``capture_error`` row (when there
    is a run folder). Returns the number of sinks that failed."""
    failed = 0
    for sink in sinks:
        try:
            sink(update)
        except Exception as exc:  # noqa: BLE001 - a sink (capture, attack) must never kill the federation
            failed += 1
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.error("round %d client %d: sink %s failed, the round goes on: %s", update.server_round,
                      update.client_id, sink_name(sink), error)
            if folder is not None:
                try:
                    folder.append(CaptureErrorRow(round=update.server_round, client=update.client_id,
                                                  error=error, sink=sink_name(sink)))
                except OSError as write_exc:  # the run folder itself is unwritable: the log line is all
                    log.error("could not write the capture_error row: %s", write_exc)
    return failed
