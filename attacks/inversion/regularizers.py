"""Image regularisers added to the gradient-matching objective (``regularizers={name: weight}``).

"Regulariser" here means a hand-made image penalty; the learned generative image prior (a VAE decoder) lives
in ``fedsim.attacks.generative`` and the label-presence mask of ``ilrg-prior`` in ``fedsim.attacks.labels``.

Each regulariser maps a :class:`RegularizerContext` to a scalar. The context holds the dummy batch in model space and in
pixel space, shaped ``[R, K, C, H, W]`` (R groups / restarts optimised jointly, K images each), and, for the
BatchNorm regulariser, the statistics the dummy batch produced in every BN layer.

| name | formula | source |
|---|---|---|
| ``tv`` | mean |x[i+1,j]-x[i,j]| + mean |x[i,j+1]-x[i,j]| (pixel space) | Inverting Gradients (Geiping et al. 2020) |
| ``tv-sum`` | eq. 8 summed per image, averaged over images | Geng et al. eq. 8 |
| ``l2`` | mean over images of ||x||_2 (model space) | GradInversion (Yin et al. 2021), Geng Table 2 |
| ``clip`` | ||x - clip(x, 0, 1)||_2 per image (pixel space) | Geng et al. eq. 17 |
| ``scale`` | ||x - (x - min) / (max - min)||_2 per image (pixel space) | Geng et al. eq. 18 |
| ``bn`` | sum_l ||mu_l(x) - mu_l||_2 + ||var_l(x) - var_l||_2 | DeepInversion / GradInversion (Yin et al. 2020, 2021) |
| ``group`` | mean ||x_r - mean_r x_r||^2 over the R groups | GradInversion group consistency (without registration) |

The BN reference statistics are the model's running statistics (``bn_reference="running"``, what a server
knows when clients share buffers of a previous round) or client-reported batch statistics (a list of
``(mean, var)`` per BN layer; :func:`bn_statistics_from_buffers` derives them from the running statistics a
client sent back after one training step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from fedsim.core.errors import AttackNotApplicable


@dataclass
class RegularizerContext:
    x: torch.Tensor  # [R, K, C, H, W] model space
    pixel: torch.Tensor  # [R, K, C, H, W] pixel space (unclamped)
    bn_stats: list[list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=list)  # per group, per layer
    bn_reference: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


def total_variation(ctx: RegularizerContext) -> torch.Tensor:
    p = ctx.pixel
    dx = (p[..., :, 1:] - p[..., :, :-1]).abs().mean()
    dy = (p[..., 1:, :] - p[..., :-1, :]).abs().mean()
    return (dx + dy) * p.shape[0]


def total_variation_sum(ctx: RegularizerContext) -> torch.Tensor:
    p = ctx.pixel
    per_image = (p[..., :, 1:] - p[..., :, :-1]).abs().flatten(2).sum(-1) + \
        (p[..., 1:, :] - p[..., :-1, :]).abs().flatten(2).sum(-1)
    return per_image.mean(-1).sum()


def l2_norm(ctx: RegularizerContext) -> torch.Tensor:
    return ctx.x.flatten(2).norm(dim=-1).mean(-1).sum()


def clip_penalty(ctx: RegularizerContext) -> torch.Tensor:
    p = ctx.pixel
    return (p - p.clamp(0.0, 1.0)).flatten(2).norm(dim=-1).mean(-1).sum()


def scale_penalty(ctx: RegularizerContext) -> torch.Tensor:
    flat = ctx.pixel.flatten(2)
    lo = flat.min(-1, keepdim=True).values
    hi = flat.max(-1, keepdim=True).values
    scaled = (flat - lo) / (hi - lo).clamp_min(1e-8)
    return (flat - scaled).norm(dim=-1).mean(-1).sum()


def bn_statistics_penalty(ctx: RegularizerContext) -> torch.Tensor:
    if not ctx.bn_reference:
        raise AttackNotApplicable("regularizer 'bn' needs a model with BatchNorm layers (or bn_statistics)")
    total = ctx.x.new_zeros(())
    for group in ctx.bn_stats:
        if len(group) != len(ctx.bn_reference):
            raise ValueError(f"bn regularizer: {len(group)} BN layers seen, {len(ctx.bn_reference)} reference statistics")
        for (mu, var), (mu_ref, var_ref) in zip(group, ctx.bn_reference):
            total = total + (mu - mu_ref).norm() + (var - var_ref).norm()
    return total


def group_consistency(ctx: RegularizerContext) -> torch.Tensor:
    if ctx.pixel.shape[0] < 2:
        return ctx.pixel.new_zeros(())
    center = ctx.pixel.mean(0, keepdim=True).detach()
    return (ctx.pixel - center).pow(2).flatten(2).sum(-1).mean(-1).sum()


REGULARIZERS: dict[str, Callable[[RegularizerContext], torch.Tensor]] = {
    "tv": total_variation,
    "tv-sum": total_variation_sum,
    "l2": l2_norm,
    "clip": clip_penalty,
    "scale": scale_penalty,
    "bn": bn_statistics_penalty,
    "group": group_consistency,
}


def check_regularizers(regularizers: Mapping[str, float] | None) -> dict[str, float]:
    regularizers = dict(regularizers or {})
    unknown = sorted(set(regularizers) - set(REGULARIZERS))
    if unknown:
        raise ValueError(f"regularizers: unknown {unknown}; valid: {sorted(REGULARIZERS)}")
    return {k: float(v) for k, v in regularizers.items() if float(v) != 0.0}


def regularizer_loss(regularizers: Mapping[str, float], ctx: RegularizerContext) -> torch.Tensor:
    """Weighted sum of the regularisers, summed over the R restarts (each restart's terms are its own)."""
    total = ctx.x.new_zeros(())
    for name, weight in regularizers.items():
        total = total + weight * REGULARIZERS[name](ctx)
    return total


# --- BatchNorm statistics -------------------------------------------------------------------------------

def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def running_statistics(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The BN layers' running (mean, var), detached copies, in module order."""
    out = []
    for m in bn_layers(model):
        if m.running_mean is None:
            raise AttackNotApplicable("bn regularizer: a BatchNorm layer has track_running_stats=False; pass "
                                      "bn_statistics")
        out.append((m.running_mean.detach().clone(), m.running_var.detach().clone()))
    return out


def bn_statistics_from_buffers(before: Sequence[tuple[torch.Tensor, torch.Tensor]],
                               after: Sequence[tuple[torch.Tensor, torch.Tensor]],
                               momentum: float | None = 0.1, batch_size: int | Sequence[int] | None = None,
                               steps: int = 1, tracked_before: int | None = None
                               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batch statistics of a client's local training from its running stats before/after (PyTorch's BN rule).

    One step: running_new = (1 - m) running_old + m batch, so the batch statistic is exact. ``steps`` = T > 1
    (FedAvg): running_T = (1 - m)^T r_0 + sum_t m (1 - m)^(T-1-t) b_t, a known mix of the T per-step
    statistics; assuming they are equal (the weights move little within a round) the common value is
    b = (running_T - (1 - m)^T r_0) / (1 - (1 - m)^T). ``momentum=None`` is PyTorch's cumulative average
    (running_T = (N r_0 + sum_t b_t) / (N + T) with N = ``tracked_before``, the layer's num_batches_tracked
    before the round): the mean of the b_t is then exact without that assumption.

    The running variance uses the unbiased batch variance, so with ``batch_size`` (the count per channel:
    B times H*W for conv layers; one int for every layer or one per layer) the biased variance is returned.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if momentum is None and tracked_before is None:
        raise ValueError("momentum=None (cumulative average) needs tracked_before (num_batches_tracked)")
    counts = list(batch_size) if isinstance(batch_size, Sequence) else [batch_size] * len(before)
    out = []
    for (mu0, var0), (mu1, var1), n in zip(before, after, counts):
        if momentum is None:
            n0 = float(tracked_before)
            mu = ((n0 + steps) * mu1 - n0 * mu0) / steps
            var = ((n0 + steps) * var1 - n0 * var0) / steps
        else:
            keep = (1.0 - float(momentum)) ** steps
            mu = (mu1 - keep * mu0) / (1.0 - keep)
            var = (var1 - keep * var0) / (1.0 - keep)
        if n is not None and n > 1:
            var = var * (n - 1) / n
        out.append((mu, var))
    return out
