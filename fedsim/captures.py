"""Capture store: one safetensors file per (round, client) under ``<run>/captures/``.

Tensors are stored as ``before/<name>``, ``after/<name>``, ``buffer/<name>`` (after), ``buffer_before/<name>``; scalars and defense settings
as JSON in the safetensors metadata. Loading never unpickles anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from safetensors.torch import load_file, save_file, safe_open

from fedsim.errors import CaptureError
from fedsim.runfolder import RunFolder
from fedsim.types import ClientUpdate

_SCALARS = ("run_id", "server_round", "client_id", "algorithm", "lr", "local_epochs", "local_steps",
            "batch_size", "num_examples")


def capture_path(run_dir: str | Path, server_round: int, client_id: int) -> Path:
    return RunFolder(Path(run_dir)).capture(server_round, client_id)


def save_update(update: ClientUpdate, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for prefix, group in (("before", update.weights_before), ("after", update.weights_after),
                          ("buffer", update.buffers_after), ("buffer_before", update.buffers_before)):
        for name, t in group.items():
            tensors[f"{prefix}/{name}"] = t.detach().contiguous().cpu()
    meta = {k: getattr(update, k) for k in _SCALARS}
    meta["defenses"] = dict(update.defenses)
    meta["cohort"] = list(update.cohort)
    meta["parameter_order"] = list(update.weights_before)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"fedsim": json.dumps(meta)})
    tmp.replace(path)
    return path


def load_update(path: str | Path) -> ClientUpdate:
    """Read a capture (safetensors + JSON metadata); validates like any ``ClientUpdate``.

    A file that is not a fedsim capture (corrupt, truncated, another format) raises ``CaptureError`` naming it.
    """
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["fedsim"])
        tensors = load_file(str(path))
        order = meta.pop("parameter_order")
        meta.update(_cohort(meta))
    except FileNotFoundError:
        raise CaptureError(f"{path}: capture file does not exist") from None
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CaptureError(f"{path}: not a readable fedsim capture ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:120] if str(exc) else 'no detail'})") from None
    groups: dict[str, dict] = {"before": {}, "after": {}, "buffer": {}, "buffer_before": {}}
    for key, t in tensors.items():
        prefix, _, name = key.partition("/")
        groups[prefix][name] = t
    before = {n: groups["before"][n] for n in order}
    after = {n: groups["after"][n] for n in order if n in groups["after"]}
    return ClientUpdate(weights_before=before, weights_after=after, buffers_after=groups["buffer"],
                        buffers_before=groups["buffer_before"], **meta)


#: keys that captures written before ``ClientUpdate.cohort`` carried inside ``defenses`` (a secure aggregate)
_LEGACY_DEFENSE_KEYS = ("cohort", "aggregate_of")


def _cohort(meta: dict) -> dict:
    """``defenses`` without the legacy aggregate keys, and ``cohort`` (its own field, or the old ``defenses``
    entry of a capture written before it had one)."""
    defenses = dict(meta.get("defenses") or {})
    legacy = defenses.get("cohort") or ()
    for key in _LEGACY_DEFENSE_KEYS:
        defenses.pop(key, None)
    return {"defenses": defenses, "cohort": tuple(meta.get("cohort") or legacy)}


def iter_captures(run_dir: str | Path) -> Iterator[Path]:
    """Capture files of a run, ordered by round then client."""
    yield from RunFolder(Path(run_dir)).iter_captures()
