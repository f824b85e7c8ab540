"""The client's reported training loss as a no-ground-truth check of a reconstruction.

Without a DP mechanism or SecAgg+ a fedsim client puts ``train_loss`` in its reply (``ClientUpdate.reported_loss``):
the mean, over its T local steps, of the batch's cross-entropy at that step's weights
(``fedsim.core.training.train_locally``). Under FedSGD (T = 1) it is exactly the mean cross-entropy of the true
batch at the weights the server sent, W0. A reconstruction (x_hat, y_hat) that is the batch reproduces it, so
``|L(x_hat, y_hat) - reported_loss|`` (the *loss consistency*) is 0 for the truth and a second, independent check
next to the gradient match (the loss is a scalar the gradient does not contain: the gradient is the loss's
derivative). Under FedAvg the reconstruction's side is the client's T steps simulated on it, batches in order, as
in the unrolled criterion (Dimitrov et al., TMLR 2022), so it is exact only up to the unknown batch order.

The loss is what ``[defense.training]`` makes it: label smoothing (public in ``update.defenses``) is applied;
under mixup the loss depends on the client's private permutation and mixing weights, and no score is given.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from fedsim.attacks.local_replay import LocalReplay
from fedsim.core.defense.base import DefenseRecord

SIGNAL = "reported loss"  # the InversionResult.signals entry's prefix


def loss_settings(defenses: Mapping[str, Any]) -> float | None:
    """The label smoothing the client's loss used (0.0 without ``[defense.training]``), or ``None`` when the loss
    cannot be reproduced (mixup)."""
    training = DefenseRecord.of(defenses).in_force.get("training")
    if training is None:
        return 0.0
    if training.mixup_alpha > 0:
        return None
    return float(training.label_smoothing)


def simulated_mean_loss(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, local_steps: int = 1,
                        local_batch_size: int | None = None, lr: float | None = None,
                        label_smoothing: float = 0.0) -> float:
    """The client's reported loss had (inputs, labels) been its data: the mean over ``local_steps`` SGD steps
    (batches of ``local_batch_size`` in order, cycling) of the batch cross-entropy at that step's weights
    (``fedsim.attacks.local_replay.LocalReplay``). ``model`` holds W0 (and the sent buffers); it is not changed."""
    replay = LocalReplay(model, inputs, labels, local_steps=local_steps, lr=lr, local_batch_size=local_batch_size,
                         label_smoothing=label_smoothing, what="a FedAvg loss")
    params, losses = dict(replay.w0), []
    for t in range(replay.steps - 1):  # the loss at each step's weights, then the step
        g = replay.grad(params, t)
        with torch.no_grad():
            losses.append(float(replay.loss(params, t)))
        params = replay.step(params, g)
    with torch.no_grad():  # the last step's loss; its step changes nothing the client reported
        losses.append(float(replay.loss(params, replay.steps - 1)))
    return sum(losses) / len(losses)


def loss_consistency(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, reported_loss: float,
                     **schedule: Any) -> float:
    """``|simulated_mean_loss(model, inputs, labels, **schedule) - reported_loss|``: 0 for the true FedSGD batch at
    W0, larger the less the reconstruction reproduces the loss the client reported. Lower is better."""
    return abs(simulated_mean_loss(model, inputs, labels, **schedule) - float(reported_loss))


def consistency_signal(reported: float, simulated: float) -> str:
    """The ``InversionResult.signals`` line: the reported loss, the reconstruction's, and their gap."""
    return (f"{SIGNAL}: client reported {reported:.4g}, the reconstruction gives {simulated:.4g} "
            f"(|gap| {abs(simulated - reported):.3g})")
