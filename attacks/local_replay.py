"""The client's local SGD steps replayed by the server on a frozen copy of the weights it sent.

Two server-side checks need what the client's training would have done with a batch of the server's choosing:
the loss the client would have reported (``fedsim.attacks.reported_loss``) and the update a shadow batch would have
produced (``fedsim.attacks.inversion.shadow``). Both replay the same schedule: T SGD steps of lr on batches of the
local batch size, taken in order and cycling, as ``fedsim.core.training.train_locally`` trains (the client's
shuffle is private, so the order is the one unknown). Written with ``torch.func.functional_call`` / ``grad``
because the replay must not touch the caller's model (train-mode BatchNorm uses batch statistics, as the client's
training did; the copy's buffers are not updated).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

from fedsim.attacks.inversion.problem import private_model

Params = dict[str, torch.Tensor]


class LocalReplay:
    """The schedule (``local_steps`` T, ``lr``, ``local_batch_size``) on (``inputs``, ``labels``) from the weights of
    ``model`` (W0; it is not changed). Runs on the model's device and dtype. ``what`` names the caller in the error
    raised when T > 1 comes without the client's lr."""

    def __init__(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, local_steps: int = 1,
                 lr: float | None = None, local_batch_size: int | None = None, label_smoothing: float = 0.0,
                 what: str = "a FedAvg replay") -> None:
        self.model, _ = private_model(model, model.training)
        p0 = next(self.model.parameters())
        self.x = inputs.detach().to(device=p0.device, dtype=p0.dtype)
        self.y = labels.detach().to(p0.device).long()
        self.names = [n for n, _ in self.model.named_parameters()]
        self.w0: Params = {n: p.detach() for n, p in self.model.named_parameters()}
        self.buffers: Params = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        self.steps = max(1, int(local_steps))
        if self.steps > 1 and (lr is None or lr <= 0):
            raise ValueError(f"{what} needs the client's lr")
        self.lr = lr
        self.batch = int(local_batch_size or len(self.x))
        self.batches = max(1, -(-len(self.x) // self.batch))
        self.label_smoothing = float(label_smoothing)

    def loss(self, params: Params, t: int) -> torch.Tensor:
        """Cross-entropy of step ``t``'s batch at ``params``."""
        start = (t % self.batches) * self.batch
        out = functional_call(self.model, {**params, **self.buffers}, (self.x[start:start + self.batch],))
        return F.cross_entropy(out, self.y[start:start + self.batch], label_smoothing=self.label_smoothing)

    def grad(self, params: Params, t: int) -> Params:
        """The gradient of step ``t``'s loss at ``params`` (detached)."""
        with torch.enable_grad():
            g = grad(lambda p: self.loss(p, t))(params)
        return {n: v.detach() for n, v in g.items()}

    def step(self, params: Params, g: Params) -> Params:
        """One SGD step."""
        return {n: params[n] - self.lr * g[n] for n in params}
