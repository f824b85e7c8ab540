"""Turn client updates into (fake) gradients and compute true gradients for known-answer checks.

Geng et al., "Towards General Deep Leakage in Federated Learning": a FedAvg client that took T plain-SGD
steps with learning rate lr sent W_T, so (W_0 - W_T) / (T * lr) is the mean of its T step gradients. For
FedSGD (T = 1) it is exactly the batch's mean gradient.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from fedsim.core.types import ClientUpdate


def weights_to_fake_gradient(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor],
                             lr: float, steps: int, names: Sequence[str] | None = None) -> list[torch.Tensor]:
    """(W_before - W_after) / (steps * lr) per parameter, in the order of ``names`` (default: ``before``)."""
    if lr <= 0 or steps < 1:
        raise ValueError(f"need lr > 0 and steps >= 1, got lr={lr}, steps={steps}")
    keys = list(names) if names is not None else list(before)
    scale = 1.0 / (steps * lr)
    return [(before[k].detach().double() - after[k].detach().double()).mul(scale).to(before[k].dtype) for k in keys]


def fake_gradient(update: ClientUpdate, model: nn.Module | None = None) -> list[torch.Tensor]:
    """Fake gradient of a captured update, aligned with ``list(model.parameters())`` when a model is given.

    Only parameters are used (buffers such as BN running statistics are not gradients). With a model, the
    result lives on the model's device in its dtype (the difference itself is taken in float64).
    """
    names = [n for n, _ in model.named_parameters()] if model is not None else None
    if names is None:
        return weights_to_fake_gradient(update.weights_before, update.weights_after, update.lr,
                                        update.local_steps)
    missing = [n for n in names if n not in update.weights_before]
    if missing:
        raise KeyError(f"update lacks parameters of the model: {missing[:5]}")
    grads = weights_to_fake_gradient(update.weights_before, update.weights_after, update.lr,
                                     update.local_steps, names)
    return [g.to(p) for g, p in zip(grads, model.parameters())]


def batch_gradient(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                   create_graph: bool = False) -> list[torch.Tensor]:
    """Mean cross-entropy gradient of a batch w.r.t. ``model.parameters()`` (what a FedSGD client shares)."""
    loss = nn.functional.cross_entropy(model(inputs), labels)
    return list(torch.autograd.grad(loss, list(model.parameters()), create_graph=create_graph))
