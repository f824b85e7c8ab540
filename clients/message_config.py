"""The run config of the message in hand, rehydrated once per process and run config.

``ClientApp(mods=[defense_mods])`` is built before the run config is known, so the config comes with each
message (``context.run_config``). The outermost mod (``fedsim.clients.mods.defense_mods``) asks :func:`parse` with
the fingerprint the ServerApp stamped in the train config (``fedsim.core.messages.RESOLVED``): a run config with
that fingerprint is rebuilt without the full check (the server checked it: ``fedsim.core.resolved``); without it
(a SecAgg+ stage) it is checked, once. Every inner mod, ``train()`` and ``evaluate_local()`` ask :func:`config_of`,
which returns that config while the run config is the same (a message of another run config is parsed again).
"""

from __future__ import annotations

import functools
from typing import Any

from flwr.app import Context

from fedsim.core.config import ExperimentConfig
from fedsim.core.resolved import rehydrate
from fedsim.core.experiment import make_model

_SLOT: dict[str, Any] = {}  # "key": the run config's items, "cfg": its ExperimentConfig


def _key(ctxt: Context) -> tuple:
    return tuple(sorted(ctxt.run_config.items()))  # Flower's run-config values are scalars (hashable)


def parse(ctxt: Context, vouched: str | None = None) -> ExperimentConfig:
    """The config of ``ctxt.run_config``: the one kept when this process saw it already, else rebuilt (checked in
    full unless ``vouched`` is its fingerprint) and kept for the messages after."""
    key = _key(ctxt)
    if _SLOT.get("key") == key:
        return _SLOT["cfg"]
    cfg = rehydrate(ctxt.run_config, vouched)
    _SLOT["key"], _SLOT["cfg"] = key, cfg
    return cfg


def config_of(ctxt: Context) -> ExperimentConfig:
    """The parsed run config of the message in hand (parsed now if no mod did)."""
    if _SLOT.get("key") == _key(ctxt):
        return _SLOT["cfg"]
    return parse(ctxt)


@functools.lru_cache(maxsize=4)
def state_names(cfg: ExperimentConfig) -> tuple[str, ...]:
    """The model's state-dict names (SecAgg+'s FitIns carries bare arrays), built once per config."""
    return tuple(make_model(cfg).state_dict())
