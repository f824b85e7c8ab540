"""Stage 2 of the engine: the gradient-matching loss of every restart, in one batched call.

For one restart, the dummy batch x [K, C, H, W] (and labels) gives a dummy gradient at each target's weights
(``torch.func.grad`` of the cross-entropy through ``functional_call``), or a simulated FedAvg update for the
unrolled target (``fedsim.attacks.inversion.fedavg``), or DP-SGD's mean of per-example clipped gradients for the
clipped target; the distance (``fedsim.attacks.inversion.objectives``) compares it with
the observed one. R restarts are evaluated together with ``torch.func.vmap`` (one forward and one backward pass
for all of them) instead of a Python loop; ``batch_restarts=False`` falls back to the loop. The result stays
differentiable w.r.t. x for ordinary autograd (the double backward of DLG / Inverting Gradients).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.func import functional_call, grad, vmap

from fedsim.attacks.inversion import fedavg as _fedavg
from fedsim.attacks.inversion.objectives import prepare_distance
from fedsim.attacks.inversion.problem import Problem
from fedsim.attacks.inversion.regularizers import bn_layers


class _BatchStats:
    """Forward hooks that record (mean, biased var) of every BN layer's input during one forward pass."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.handles = [m.register_forward_hook(self._hook) for m in bn_layers(model)]

    def _hook(self, module, inputs, output) -> None:
        x = inputs[0]
        dims = [0] + list(range(2, x.dim()))
        self.stats.append((x.mean(dims), x.var(dims, unbiased=False)))

    def pop(self, n: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        stats, self.stats = self.stats[:n], []
        return tuple(stats)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class GradientMatcher:
    """``matcher(x [R, K, ...], soft [R, K, C] | None) -> (losses [R], bn statistics per BN layer, [R, ...])``."""

    def __init__(self, problem: Problem, distance: str, weights: Sequence[float], target: str,
                 want_bn: bool = False, batch_restarts: bool = True) -> None:
        self.p = problem
        self.distances = [prepare_distance(distance, t, weights) for _, t in problem.pairs]
        self.target = target
        self.batch_restarts = batch_restarts
        self.n_bn = len(problem.bn_reference) if want_bn else 0
        self.recorder = _BatchStats(problem.model) if want_bn else None

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.remove()

    def _gradient(self, params, x, y, vmapped: bool):
        """Dummy gradient at ``params``: ``torch.func.grad`` under vmap, else autograd with create_graph
        (measured faster on CPU for a single restart); both stay differentiable w.r.t. x."""
        model, buffers, names = self.p.model, self.p.buffers, self.p.names
        if not vmapped:
            leaves = {n: t.detach().requires_grad_(True) for n, t in params.items()}
            loss = _fedavg.step_loss(functional_call(model, {**leaves, **buffers}, (x,)), y)
            stats = self.recorder.pop(self.n_bn) if self.recorder is not None else ()
            return list(torch.autograd.grad(loss, [leaves[n] for n in names], create_graph=True)), stats

        def loss_fn(p):
            loss = _fedavg.step_loss(functional_call(model, {**p, **buffers}, (x,)), y)
            stats = self.recorder.pop(self.n_bn) if self.recorder is not None else ()
            return loss, stats

        g, stats = grad(loss_fn, has_aux=True)(params)
        return [g[n] for n in names], stats

    def _clipped_gradient(self, params, x, y):
        """DP-SGD's released direction on the dummy batch: per-example gradients (vmap over the examples), each
        scaled by min(1, C / (||g_i|| + 1e-6)) as Opacus clips them, then averaged. Differentiable w.r.t. x;
        the noise is not modelled (the cosine distance treats it as the residual)."""
        model, buffers, names = self.p.model, self.p.buffers, self.p.names

        def sample_loss(p, xi, yi):
            return _fedavg.step_loss(functional_call(model, {**p, **buffers}, (xi.unsqueeze(0),)), yi.unsqueeze(0))

        per = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, x, y)
        flat = [per[n].reshape(x.shape[0], -1) for n in names]
        norms = torch.sqrt(sum((f * f).sum(1) for f in flat))
        factor = (self.p.clip_norm / (norms + 1e-6)).clamp(max=1.0)
        return [(per[n] * factor.view(-1, *([1] * (per[n].dim() - 1)))).mean(0) for n in names]

    def one(self, x: torch.Tensor, soft: torch.Tensor | None, vmapped: bool = True):
        """Matching loss of one restart (mean over the targets) and its BN statistics."""
        y = self.p.hard_labels if soft is None else soft
        total, stats = x.new_zeros(()), ()
        for i, (params, target) in enumerate(self.p.pairs):
            # BN statistics come from the gradient target only: fedsim.attacks.inversion.core refuses the 'bn'
            # regularizer with the unrolled and clipped targets
            if self.target == "unrolled":
                dummy = _fedavg.simulate_local_training(self.p.model, params, self.p.buffers, x, y,
                                                        self.p.local_steps, self.p.local_batch_size,
                                                        self.p.client_lr)
            elif self.target == "clipped":
                dummy = self._clipped_gradient(params, x, y)
            else:
                dummy, s = self._gradient(params, x, y, vmapped)
                stats = s if i == 0 else stats
            total = total + self.distances[i](dummy)
        return total / len(self.p.pairs), stats

    def __call__(self, x: torch.Tensor, soft: torch.Tensor | None = None):
        r = x.shape[0]
        if r == 1 or not self.batch_restarts:
            outs = [self.one(x[g], None if soft is None else soft[g], vmapped=False) for g in range(r)]
            losses = torch.stack([o[0] for o in outs])
            stats = tuple(tuple(torch.stack([o[1][j][t] for o in outs]) for t in range(2))
                          for j in range(len(outs[0][1])))
            return losses, stats
        in_dims = (0, None if soft is None else 0)
        return vmap(self.one, in_dims=in_dims, randomness="different")(x, soft)
