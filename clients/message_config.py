"""The run config of the message in hand, parsed once per message.

``ClientApp(mods=[defense_mods])`` is built before the run config is known, so the config comes with each
message (``context.run_config``). The outermost mod (``fedsim.clients.mods.defense_mods``) parses it once per TRAIN
message (:func:`parse`); every inner mod, ``train()`` and ``evaluate_local()`` ask :func:`config_of`, which
returns that parse while the run config is the same (a message of another run config is parsed again).
"""

from __future__ import annotations

import functools
from typing import Any

from flwr.app import Context

from fedsim.core.config import ExperimentConfig, from_flat
from fedsim.core.experiment import make_model

_SLOT: dict[str, Any] = {}  # "key": the run config's items, "cfg": its ExperimentConfig


def _key(ctxt: Context) -> tuple:
    return tuple(sorted(ctxt.run_config.items()))  # Flower's run-config values are scalars (hashable)


def parse(ctxt: Context) -> ExperimentConfig:
    """Parse ``ctxt.run_config`` (once per message, in the outermost mod) and keep it for the rest of it."""
    cfg = from_flat(ctxt.run_config)
    _SLOT["key"], _SLOT["cfg"] = _key(ctxt), cfg
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
