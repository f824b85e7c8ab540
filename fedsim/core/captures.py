"""Capture store: the global model once per round and one safetensors file per (round, client) under
``<run>/captures/``.

``captures/round_R/global.safetensors`` holds the global model the server sent in round R: ``before/<name>``
(parameters) and ``buffer_before/<name>`` (buffers). Each ``client_C.safetensors`` holds ``after/<name>`` and
``buffer/<name>`` (after local training), with the scalars and defense settings as JSON in the safetensors
metadata (``"weights_before": "global"`` says the weights before are in the round's global file; ``reported_loss``,
the reply's ``train_loss``, only when the client sent one: older captures read back ``None``). An update whose
weights before differ from the round's global model (never in a fedsim run) keeps them in its own file, and
captures written before the global file existed (``before/`` inside every client file) still load.
:func:`load_update` reassembles the ``ClientUpdate``; nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Mapping

import torch
from safetensors.torch import load_file, save_file, safe_open

from fedsim.core.errors import CaptureError
from fedsim.core.runfolder import RunFolder, global_capture_of
from fedsim.core.types import ClientUpdate

_SCALARS = ("run_id", "server_round", "client_id", "algorithm", "lr", "local_epochs", "local_steps",
            "batch_size", "num_examples")
_GLOBAL = "global"  # metadata value of "weights_before": in the round's global file

Tensors = dict[str, torch.Tensor]


def capture_path(run_dir: str | Path, server_round: int, client_id: int) -> Path:
    return RunFolder(Path(run_dir)).capture(server_round, client_id)


def _cpu(prefix: str, group: Mapping[str, torch.Tensor]) -> Tensors:
    return {f"{prefix}/{name}": t.detach().contiguous().cpu() for name, t in group.items()}


def _write(tensors: Tensors, path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"fedsim": json.dumps(meta)})
    tmp.replace(path)


def _global_tensors(update: ClientUpdate) -> Tensors:
    return {**_cpu("before", update.weights_before), **_cpu("buffer_before", update.buffers_before)}


def _same(a: Tensors, b: Tensors) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                                        and torch.equal(a[k], b[k]) for k in a)


def save_update(update: ClientUpdate, path: str | Path, global_model: Tensors | None = None) -> Path:
    """Write one capture. ``global_model`` (the round's global file, as :func:`_global_tensors` gives it): when the
    update's weights before equal it, they are left out of the client file; otherwise they go in (self-contained)."""
    path = Path(path)
    own = _global_tensors(update)
    shared = global_model is not None and _same(own, global_model)
    tensors = {**_cpu("after", update.weights_after), **_cpu("buffer", update.buffers_after)}
    if not shared:
        tensors.update(own)
    meta = {k: getattr(update, k) for k in _SCALARS}
    meta["defenses"] = dict(update.defenses)
    meta["cohort"] = list(update.cohort)
    if update.reported_loss is not None:  # absent, not null: captures without it read back as None
        meta["reported_loss"] = update.reported_loss
    meta["parameter_order"] = list(update.weights_before)
    if shared:
        meta["weights_before"] = _GLOBAL
        meta["buffer_order"] = list(update.buffers_before)
    _write(tensors, path, meta)
    return path


class CaptureStore:
    """Writes the captures of one run folder: the first capture of a round writes the round's global file, every
    client file then refers to it. Used by the capture sink and the attack scheduler (each its own store: the
    global file on disk is read back once per round when another store wrote it)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.folder = RunFolder(Path(run_dir))
        self._round: int | None = None
        self._global: Tensors | None = None

    def _global_for(self, update: ClientUpdate) -> Tensors:
        if self._round == update.server_round and self._global is not None:
            return self._global
        path = self.folder.capture_global(update.server_round)
        tensors = _read_global(path) if path.is_file() else None
        if tensors is None:
            tensors = _global_tensors(update)
            _write(tensors, path, {"server_round": update.server_round, "run_id": update.run_id})
        self._round, self._global = update.server_round, tensors
        return tensors

    def save(self, update: ClientUpdate) -> Path:
        """Capture ``update`` (the round's global file first, when it is the round's first capture)."""
        path = self.folder.capture(update.server_round, update.client_id)
        return save_update(update, path, self._global_for(update))


def _read_global(path: Path) -> Tensors | None:
    try:
        return load_file(str(path))
    except Exception:  # noqa: BLE001 - an unreadable global file is rewritten by the next capture of the round
        return None


def _split(tensors: Tensors) -> dict[str, Tensors]:
    groups: dict[str, Tensors] = {"before": {}, "after": {}, "buffer": {}, "buffer_before": {}}
    for key, t in tensors.items():
        prefix, _, name = key.partition("/")
        groups[prefix][name] = t
    return groups


def _unreadable(path: str | Path, exc: Exception) -> CaptureError:
    detail = str(exc).splitlines()[0][:120] if str(exc) else "no detail"
    return CaptureError(f"{path}: not a readable fedsim capture ({type(exc).__name__}: {detail})")


def load_update(path: str | Path) -> ClientUpdate:
    """Read a capture (safetensors + JSON metadata, and the round's global file when it refers to one); validates
    like any ``ClientUpdate``. A file that is not a fedsim capture (corrupt, truncated, another format), or whose
    global file is missing or unreadable, raises ``CaptureError`` naming it."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["fedsim"])
        tensors = load_file(str(path))
        order = meta.pop("parameter_order")
        buffer_order = meta.pop("buffer_order", None)
        shared = meta.pop("weights_before", None) == _GLOBAL
        meta.update(_cohort(meta))
    except FileNotFoundError:
        raise CaptureError(f"{path}: capture file does not exist") from None
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise _unreadable(path, exc) from None
    groups = _split(tensors)
    if shared:
        groups.update(_load_global(path, order, buffer_order or []))
    try:
        before = {n: groups["before"][n] for n in order}
    except KeyError as exc:
        raise CaptureError(f"{path}: capture lacks the weights before of parameter {exc}") from None
    after = {n: groups["after"][n] for n in order if n in groups["after"]}
    return ClientUpdate(weights_before=before, weights_after=after, buffers_after=groups["buffer"],
                        buffers_before=groups["buffer_before"], **meta)


def _load_global(path: str | Path, order: list[str], buffer_order: list[str]) -> dict[str, Tensors]:
    """``before`` and ``buffer_before`` of a capture from its round's global file."""
    gpath = global_capture_of(path)
    try:
        groups = _split(load_file(str(gpath)))
    except FileNotFoundError:
        raise CaptureError(f"{path}: its round's global model {gpath} does not exist") from None
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(gpath, exc) from None
    missing = [n for n in order if n not in groups["before"]] + [
        n for n in buffer_order if n not in groups["buffer_before"]]
    if missing:
        raise CaptureError(f"{path}: its round's global model {gpath} lacks {missing[0]}")
    return {"before": groups["before"], "buffer_before": {n: groups["buffer_before"][n] for n in buffer_order}}


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
    """Capture files of a run (client files, not the global ones), ordered by round then client."""
    yield from RunFolder(Path(run_dir)).iter_captures()
