"""A cache of ``ig-shadow``'s calibration, one per (global model, schedule, attack settings): issue 36 part 3.

``ig-shadow`` (``fedsim.attacks.inversion.shadow``) spends most of its time choosing the TV weight and the step size
on a shadow update it simulates from public images (3 step sizes x the TV grid, each at the attack's budget, against
one real run). Every client of a round received the same global model with the same schedule (lr, local steps,
batch size), so the calibration of one attacked update serves every other attacked update of that round: the
attack runner keeps a :class:`CalibrationCache` and hands it to each attack it runs (``calibration_cache=``).

The key is everything the calibration is a function of: a digest of the model's state (parameters and buffers,
its class and train/eval mode: the round's global model), the shadow batch size K, the input shape, the client's
schedule (lr, local steps T, local batch size B: FedSGD is T = 1, FedAvg T > 1), the update defenses the attacker
simulates on the shadow, the grids, budget and seed of the calibration and every other option the shadow runs take.
The value is the chosen (TV weight, step size) and the shadow PSNRs behind the choice. Neither holds anything of a
client: with a cache the shadow batch is drawn from the public split *without* the update's restored labels (they
differ between clients; a calibration that read them would depend on which client was attacked first), so a
calibration is computed from public data and the model only. A different model state, schedule or setting is a
different key (a miss): calibrations are not shared across rounds (the global model changes every round).

The cache is an ordinary object owned by whoever runs the attacks (``fedsim attack``'s replay, the live scheduler
inline or in each of its worker processes, ``fedsim.server.scheduler``); nothing here is module-level state.
Written for fedsim (no library caches an attack's calibration).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Calibration:
    """``ig-shadow``'s choice on its shadow update: TV weight, step size, and the shadow PSNRs that made it."""

    tv: float
    attack_lr: float
    tv_psnr: Mapping[float, float] = field(default_factory=dict)  # TV weight -> mean shadow PSNR at ``attack_lr``
    lr_psnr: Mapping[float, float] = field(default_factory=dict)  # step size -> best shadow PSNR with it


class CalibrationCache:
    """Calibrations by key (:func:`calibration_key`), with hit / miss counts. Not thread-safe: one per runner."""

    def __init__(self) -> None:
        self._store: dict[str, Calibration] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"CalibrationCache({len(self)} calibrations, {self.hits} hits, {self.misses} misses)"

    def get_or_compute(self, key: str, compute: Callable[[], Calibration]) -> tuple[Calibration, bool]:
        """(the calibration of ``key``, whether it was reused); ``compute()`` runs on a miss and is stored."""
        found = self._store.get(key)
        if found is not None:
            self.hits += 1
            return found, True
        self.misses += 1
        value = compute()
        self._store[key] = value
        return value, False


def model_digest(model: nn.Module) -> str:
    """A digest of the model's state: class, train/eval mode, every parameter's and buffer's name, dtype, shape
    and bytes (on the host: hashing needs them there; one pass, ~0.1 s for ResNet-18's 45 MB)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{type(model).__module__}.{type(model).__qualname__}:{model.training}".encode())
    for name, t in model.state_dict().items():
        t = t.detach()
        h.update(f"|{name}:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(_bytes(t))
    return h.hexdigest()


def _bytes(t: torch.Tensor) -> bytes:
    """A tensor's raw bytes (host copy; 0-d and empty tensors included)."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _fingerprint(value: Any) -> Any:
    """A hashable, printable stand-in for an option's value; ``TypeError`` for a value it cannot describe (the
    caller then computes without the cache rather than risk two different settings sharing a key)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return "nan" if math.isnan(value) else value
    if isinstance(value, torch.Tensor):
        t = value.detach()
        h = hashlib.blake2b(_bytes(t), digest_size=12)
        return ("tensor", str(t.dtype), tuple(t.shape), h.hexdigest())
    if isinstance(value, np.ndarray):
        return _fingerprint(torch.from_numpy(np.ascontiguousarray(value)))
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((str(k), _fingerprint(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(_fingerprint(v) for v in value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # field names beside their values from astuple (no attribute read by a computed name, which
        # tests/test_data_boundaries forbids in attacks/)
        names = tuple(f.name for f in dataclasses.fields(value))
        return (type(value).__qualname__, tuple(zip(names, _fingerprint(dataclasses.astuple(value))[1])))
    raise TypeError(f"no calibration key for a {type(value).__name__}")


def calibration_key(model: nn.Module, **settings: Any) -> str:
    """The cache key of a calibration on ``model`` with ``settings`` (K, input shape, schedule, defense, grids,
    budget, seed, the shadow runs' options); ``TypeError`` when a setting cannot be fingerprinted."""
    described = repr(tuple(sorted((k, _fingerprint(v)) for k, v in settings.items())))
    return model_digest(model) + ":" + hashlib.blake2b(described.encode(), digest_size=16).hexdigest()
