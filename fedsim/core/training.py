"""Local training with plain SGD (no momentum, no weight decay), recording what each step used.

FedSGD (McMahan et al. 2017): one step on one batch, so (W_before - W_after) / lr is that batch's exact mean
gradient. FedAvg: E epochs over the partition in batches of B. The per-step batches are returned as a
``GroundTruth`` for the audit channel (never put in the Flower reply).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedsim.core.types import GroundTruth


@dataclass(frozen=True)
class LocalResult:
    steps: int
    mean_loss: float
    ground_truth: GroundTruth


def to_model(model: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """``t`` on the model's device; floating inputs also in the model's dtype (labels stay integers)."""
    p = next(model.parameters(), None)
    if p is None:
        return t
    return t.to(device=p.device, dtype=p.dtype) if t.is_floating_point() else t.to(p.device)


def step_batches(num_examples: int, algorithm: str, batch_size: int, epochs: int, seed: int,
                 max_steps: int = 0) -> list[torch.Tensor]:
    """Index batches for each local step, deterministic in ``seed``.

    FedSGD: a single batch of ``min(batch_size, n)`` samples. FedAvg: ``epochs`` seeded shuffles cut into
    batches of ``batch_size`` (the last one may be smaller), optionally capped at ``max_steps``.
    """
    gen = torch.Generator().manual_seed(seed)
    if algorithm == "fedsgd":
        return [torch.randperm(num_examples, generator=gen)[:batch_size].sort().values]
    if algorithm != "fedavg":
        raise ValueError(f"train.algorithm: {algorithm!r} is not one of fedsgd, fedavg")
    batches: list[torch.Tensor] = []
    for _ in range(epochs):
        batches.extend(torch.randperm(num_examples, generator=gen).split(batch_size))
    return batches[:max_steps] if max_steps else batches


def sgd_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, step_loss=None) -> float:
    """One plain SGD step on the mean cross-entropy of the batch (or ``step_loss(model, x, y)``, e.g. label
    smoothing or mixup from ``fedsim.core.defense.training``); returns the loss."""
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y) if step_loss is None else step_loss(model, x, y)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.sub_(p.grad, alpha=lr)
    return float(loss.detach())


def train_locally(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, algorithm: str, lr: float,
                  epochs: int, batch_size: int, seed: int, server_round: int, client_id: int,
                  max_steps: int = 0, step_loss=None) -> LocalResult:
    """Train ``model`` in place on (x, y) and return the steps taken and the batches used.

    Batches move to the model's device (``run.device``) and dtype; the recorded ground truth stays as ``x`` is.
    """
    if len(x) == 0:
        raise ValueError(f"client {client_id} has no training data")
    model.train()
    batches = step_batches(len(x), algorithm, batch_size, epochs, seed, max_steps)
    losses, inputs, labels = [], [], []
    for idx in batches:
        xb, yb = x[idx], y[idx]
        losses.append(sgd_step(model, to_model(model, xb), to_model(model, yb), lr, step_loss))
        inputs.append(xb.detach().clone())
        labels.append(yb.detach().clone())
    truth = GroundTruth(server_round, client_id, tuple(inputs), tuple(labels))
    return LocalResult(len(batches), sum(losses) / len(losses), truth)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> tuple[float, float]:
    """(accuracy, mean cross-entropy loss) of ``model`` on (x, y), batches on the model's device."""
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(x), batch_size):
        out = model(to_model(model, x[start:start + batch_size]))
        target = to_model(model, y[start:start + batch_size])
        loss_sum += float(nn.functional.cross_entropy(out, target, reduction="sum"))
        correct += int((out.argmax(1) == target).sum())
    model.train()
    return correct / len(x), loss_sum / len(x)
