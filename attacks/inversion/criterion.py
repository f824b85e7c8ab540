"""The attacker's own score of a reconstruction, computed from what the server sees (no ground truth).

One number comparable across inversion methods on the same update: the cosine gradient distance
1 - cos(g(x_hat, y_hat), g_obs) between the gradient the reconstruction (with the labels it was assigned) produces
at the weights the server sent and the observed fake gradient (W0 - WT) / (T lr) (Geiping et al., NeurIPS 2020,
use the same distance as their objective). For a FedAvg update (T > 1) the reconstruction's side is the
client's T local SGD steps simulated on it (the unrolled target of Dimitrov et al., TMLR 2022;
``fedsim.attacks.inversion.fedavg.simulate_local_training``), which is what the observation really is; every
method is scored that way, whatever objective it optimised. Lower is better; 0 is a perfect match.
A sparsified update (top-k / random-k: the public defense settings say so) is compared on the coordinates the
client sent only (``sent_only``, name suffix ``[sent]``): the dropped ones are zeros the client never computed, and
a dense comparison favours reconstructions fitted to those zeros (plain ``ig`` over ``gias`` on every top-k update
of the frontier, docs/benchmarks/defenses.md).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call

from fedsim.attacks.inversion import fedavg as _fedavg
from fedsim.attacks.inversion.problem import private_model


def criterion_name(local_steps: int, local_batch_size: int | None = None, sent_only: bool = False) -> str:
    """``grad-cosine@W0`` (one step) or ``grad-cosine@unrolled(T=.., B=..)`` (FedAvg); ``[sent]`` appended when
    only the sent coordinates of a sparsified update are compared."""
    name = "grad-cosine@W0" if local_steps <= 1 else f"grad-cosine@unrolled(T={local_steps}, B={local_batch_size})"
    return name + ("[sent]" if sent_only else "")


def gradient_cosine_distance(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                             observed: Sequence[torch.Tensor], *, lr: float | None = None, local_steps: int = 1,
                             local_batch_size: int | None = None, sent_only: bool = False) -> float:
    """1 - cos between the reconstruction's (simulated) update and ``observed`` (aligned with
    ``model.parameters()``), over all parameters flattened together (``sent_only``: over the coordinates where
    ``observed`` is non-zero, those a sparsified update sent). Runs on the model's device and dtype; the
    caller's model and its buffers are not changed (a frozen copy whose BatchNorm uses batch statistics in train
    mode, as the attack's own)."""
    copy_, _ = private_model(model, model.training)
    p0 = next(copy_.parameters())
    cast = dict(device=p0.device, dtype=p0.dtype)
    x = inputs.detach().to(**cast)
    y = labels.detach().to(p0.device).long()
    names = [n for n, _ in copy_.named_parameters()]
    params = {n: p.detach() for n, p in copy_.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in copy_.named_buffers()}
    with torch.enable_grad():
        if local_steps > 1:
            if lr is None or lr <= 0:
                raise ValueError("a FedAvg criterion needs the client's lr")
            mine = _fedavg.simulate_local_training(copy_, params, buffers, x, y, local_steps,
                                                   local_batch_size or len(x), lr, create_graph=False)
        else:
            leaves = {n: t.clone().requires_grad_(True) for n, t in params.items()}
            loss = _fedavg.step_loss(functional_call(copy_, {**leaves, **buffers}, (x,)), y)
            mine = list(torch.autograd.grad(loss, [leaves[n] for n in names]))
    a = torch.cat([g.detach().flatten() for g in mine])
    b = torch.cat([g.detach().to(**cast).flatten() for g in observed])
    if sent_only:
        sent = b != 0
        a, b = a[sent], b[sent]
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(torch.finfo(a.dtype).tiny)
    return float(1.0 - cos)
