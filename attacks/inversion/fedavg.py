"""FedAvg targets: fake gradients from weights (Geng et al.) and an unrolled simulation of local SGD.

A FedAvg client starts at W0, takes T plain-SGD steps (learning rate ``lr``, batches of ``local_batch_size``
taken in order from its n examples, wrapping around for further epochs) and sends back WT.

* Geng et al. (Sec. 3.5, eq. 22-24) match one dummy gradient at W0 against the fake gradient
  (W0 - WT) / (T * lr); :func:`target_from_weights` computes it.
* The unrolled objective (breaching's multi-step objective; Dimitrov et al., "Data leakage in federated
  averaging", 2022) simulates the T steps on the dummy batch with ``torch.func.functional_call`` and
  ``torch.func.grad`` and compares the simulated update with the observed one, both in
  fake-gradient form. At the true data, in the true order, the two agree to rounding error.

Assumption: the client does not reshuffle between epochs (or the attacker cannot know the shuffle), and the
dummy batch order is the client's order within an epoch (any order is fine for the first epoch since the dummy
batch is free; the assumption matters only when T spans several epochs or several batches).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad
from torch.nn import functional as F

from fedsim.attacks.gradients import weights_to_fake_gradient


def as_param_list(model: nn.Module, values: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
                  what: str) -> list[torch.Tensor]:
    """A dict keyed by parameter name or a list aligned with ``model.parameters()`` -> aligned list."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    if isinstance(values, Mapping):
        missing = [n for n in names if n not in values]
        if missing:
            raise ValueError(f"{what}: missing parameters {missing[:5]}")
        values = [values[n] for n in names]
    values = list(values)
    if len(values) != len(names):
        raise ValueError(f"{what}: {len(values)} tensors for {len(names)} model parameters")
    for n, v, s in zip(names, values, shapes):
        if tuple(v.shape) != tuple(s):
            raise ValueError(f"{what}[{n}]: shape {tuple(v.shape)} != parameter shape {tuple(s)}")
    return values


def target_from_weights(model: nn.Module, weights_after, lr: float, local_steps: int,
                        weights_before=None) -> list[torch.Tensor]:
    """Geng's fake gradient (W0 - WT) / (T lr); W0 defaults to the model's current parameters."""
    before = as_param_list(model, weights_before if weights_before is not None else
                           [p.detach() for p in model.parameters()], "weights_before")
    after = as_param_list(model, weights_after, "weights_after")
    names = [str(i) for i in range(len(before))]
    return weights_to_fake_gradient(dict(zip(names, before)), dict(zip(names, after)), lr, local_steps, names)


def step_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with hard labels (LongTensor[B]) or DLG soft labels (logits [B, C], softmaxed)."""
    if targets.dtype == torch.long:
        return F.cross_entropy(logits, targets)
    return torch.sum(-F.softmax(targets, -1) * F.log_softmax(logits, -1), dim=-1).mean()


def simulate_local_training(model: nn.Module, params: Mapping[str, torch.Tensor],
                            buffers: Mapping[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor,
                            local_steps: int, local_batch_size: int, lr: float,
                            create_graph: bool = True) -> list[torch.Tensor]:
    """Run ``local_steps`` SGD steps functionally from ``params``; return (W0 - WT) / (T lr) as a list.

    Each step's gradient is ``torch.func.grad`` of the step loss, so the result is differentiable w.r.t.
    ``inputs`` (and soft ``targets``) for ordinary autograd and works under ``torch.func.vmap``;
    ``create_graph=False`` detaches it. BatchNorm buffers are not updated (the engine's model copy uses batch
    statistics in train mode).
    """
    if local_steps < 1 or local_batch_size < 1:
        raise ValueError(f"need local_steps >= 1 and local_batch_size >= 1, got {local_steps}, {local_batch_size}")
    n = inputs.shape[0]
    batches = math.ceil(n / local_batch_size)
    names = list(params)
    current = dict(params)
    for t in range(local_steps):
        start = (t % batches) * local_batch_size
        xb, yb = inputs[start:start + local_batch_size], targets[start:start + local_batch_size]

        def loss_fn(p, xb=xb, yb=yb):
            return step_loss(functional_call(model, {**p, **buffers}, (xb,)), yb)

        grads = grad(loss_fn)(current)
        current = {k: current[k] - lr * grads[k] for k in names}
    scale = 1.0 / (local_steps * lr)
    out = [(params[k] - current[k]) * scale for k in names]
    return out if create_graph else [o.detach() for o in out]
