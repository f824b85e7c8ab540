"""Client-side fault injection (``[faults]``, off by default), called from ``fedsim.clients.app.train``.

``before_training`` makes a chosen client drop out (raises, so Flower sends the server an error reply) or
straggle (sleeps). ``corrupt`` turns a chosen client's honest reply (state dict + metrics) into a malformed
one of the configured kind. Pure torch: the ClientApp builds the Flower records afterwards.
"""

from __future__ import annotations

import time

import torch

from fedsim.core import messages as K
from fedsim.core.faults_spec import parse_faults


class InjectedDropout(RuntimeError):
    """A client configured to drop out in this round."""


def before_training(cfg, client: int, server_round: int) -> None:
    plan = parse_faults(cfg.faults)
    if plan.drops_out(client, server_round):
        raise InjectedDropout(f"injected dropout: client {client} in round {server_round}")
    if plan.straggles(client, server_round):
        time.sleep(plan.straggle_seconds)


def corrupt(cfg, client: int, server_round: int, state: dict[str, torch.Tensor],
            sent: dict[str, torch.Tensor], metrics: dict) -> tuple[dict[str, torch.Tensor], dict, str | None]:
    """The (possibly corrupted) reply and the fault kind applied (None when the client is honest)."""
    plan = parse_faults(cfg.faults)
    kind = plan.corruption(client, server_round)
    if kind is None:
        return state, metrics, None
    return corrupt_state(kind, state, sent, metrics, plan.huge_norm_factor) + (kind,)


def corrupt_state(kind: str, state: dict[str, torch.Tensor], sent: dict[str, torch.Tensor], metrics: dict,
                  huge_norm_factor: float = 1e6) -> tuple[dict[str, torch.Tensor], dict]:
    state = {k: v.clone() for k, v in state.items()}
    metrics = dict(metrics)
    floats = [k for k, v in state.items() if v.is_floating_point()]
    target = floats[-1]
    if kind == "nan":
        state[target].view(-1)[0] = float("nan")
    elif kind == "inf":
        state[target].view(-1)[0] = float("inf")
    elif kind == "shape":
        state[target] = torch.zeros(state[target].numel() + 1, dtype=state[target].dtype)
    elif kind == "dtype":
        state[target] = state[target].double()
    elif kind == "missing_key":
        state.pop(target)
    elif kind == "extra_key":
        state["injected.extra"] = torch.zeros(3)
    elif kind == "num_examples":
        metrics[K.NUM_EXAMPLES] = 10**12
    elif kind == "huge_norm":
        for k in floats:
            if k in sent:
                state[k] = sent[k] + huge_norm_factor * (state[k] - sent[k])
    else:
        raise ValueError(f"unknown fault kind {kind!r}")
    return state, metrics
