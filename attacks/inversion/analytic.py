"""Analytic input recovery through a biased first fully connected layer.

For y = W x + b as the first layer and one example, dL/dW = (dL/dy) x^T and dL/db = dL/dy, so every row i with
dL/db_i != 0 gives x = (dL/dW)_i / (dL/db)_i (Phong et al., "Privacy-preserving deep learning via additively
homomorphic encryption", 2018; Geiping et al. 2020, Prop. D.1 / the "Theorem" that a biased fully connected
layer leaks its input). We solve the rows jointly in least squares: x = sum_i g_b[i] G_W[i] / sum_i g_b[i]^2,
which is exact for batch 1 and, for larger batches, returns a gradient-weighted average of the batch (one
image). The same holds for a FedAvg fake gradient with one local step.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from fedsim.core.errors import AttackNotApplicable


def first_linear_indices(model: nn.Module) -> tuple[int, int, nn.Linear]:
    """Indices of the first parameterised layer's weight and bias; it must be an nn.Linear with a bias."""
    first = None
    for module in model.modules():
        if any(True for _ in module.parameters(recurse=False)):
            first = module
            break
    if not isinstance(first, nn.Linear) or first.bias is None:
        raise AttackNotApplicable("analytic-fc needs a model whose first parameterised layer is nn.Linear with a "
                                  f"bias (got {type(first).__name__})")
    ids = {id(p): i for i, p in enumerate(model.parameters())}
    return ids[id(first.weight)], ids[id(first.bias)], first


def analytic_fc(*, model: nn.Module, gradients: Sequence[torch.Tensor], input_shape: Sequence[int],
                labels=None, steps=None, mean=None, std=None, seed=None, num_samples=None,
                rel_threshold: float = 1e-6, return_result: bool = False, callback=None, log_every=None, **unknown):
    """Recover the (single) input of a biased first linear layer from its gradient; model space [1, *shape].

    ``labels``, ``steps``, ``mean``, ``std``, ``seed``, ``num_samples`` are accepted for a uniform call signature
    and unused."""
    if unknown:
        raise ValueError(f"analytic-fc: unknown options {sorted(unknown)}; valid: rel_threshold, return_result")
    if gradients is None:
        raise ValueError("analytic-fc needs gradients=... (a FedSGD gradient or a one-step fake gradient)")
    w_idx, b_idx, layer = first_linear_indices(model)
    g_w, g_b = gradients[w_idx].detach(), gradients[b_idx].detach()
    if g_w.shape != layer.weight.shape or g_b.shape != layer.bias.shape:
        raise ValueError("gradients are not aligned with list(model.parameters())")
    mask = g_b.abs() > rel_threshold * g_b.abs().max()
    if not bool(mask.any()):
        raise AttackNotApplicable("analytic-fc: the first layer's bias gradient is zero (no active unit)")
    gb = g_b[mask]
    x = (gb[:, None] * g_w[mask]).sum(0) / gb.pow(2).sum()
    out = x.view(1, *[int(s) for s in input_shape])
    if return_result:
        from fedsim.attacks.inversion.core import InversionTrace

        return InversionTrace(method="analytic-fc", inputs=out, labels=None, best_loss=0.0, history=[], steps=0,
                              seconds=0.0, seconds_per_step=0.0, options={"rel_threshold": rel_threshold})
    return out
