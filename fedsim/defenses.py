"""Client-side defenses as pure functions on the update ``W_after - W_before`` (no Flower here).

Every function takes a mapping name -> tensor (the update a client is about to send) and returns a new mapping;
inputs are never modified. :func:`defend_update` applies the configured ones in a fixed order:

    clip (L2 of the whole update) -> Gaussian noise -> top-k or random-k sparsification -> uniform quantization

Noise comes after clipping (the Gaussian mechanism needs bounded sensitivity) and before compression, so
sparsification/quantization are post-processing and do not weaken whatever the noise guarantees.

Top-k / random-k: ``k = ceil(ratio * n)`` entries are kept, exactly, where ``n`` is the tensor's size
(``scope="tensor"``, each tensor keeps its own k) or the size of the whole update (``scope="global"``, one k over
all tensors together). Ties in magnitude are broken by ``torch.topk``'s index order, so exactly k survive.
Random-k does not rescale the survivors (it is a plain sparsifier, biased towards zero).

Quantization: per tensor, ``2**bits`` uniformly spaced levels between the tensor's min and max (deterministic
round-to-nearest); both end points are sent in the clear as a real scheme would.

Secure aggregation (:func:`pairwise_masks`): the additive-mask core of Bonawitz et al. (SecAgg / SecAgg+) in
floating point: every pair (i, j) of the cohort derives a mask from a pairwise seed, i adds it and j subtracts
it, so masks cancel in the sum. Key agreement is simulated (the pair seed is a hash of a cohort secret that the
server code never reads) and there is no dropout recovery (no Shamir shares): a client that drops leaves its
masks in the aggregate, so the sweep presets use full participation.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

Tensors = Mapping[str, torch.Tensor]


# ---- basic mechanisms --------------------------------------------------------------------------------------
def update_of(before: Tensors, after: Tensors) -> dict[str, torch.Tensor]:
    return {k: after[k].detach().double() - before[k].detach().double() for k in after}


def apply_update(before: Tensors, update: Tensors) -> dict[str, torch.Tensor]:
    return {k: (before[k].double() + update[k]).to(before[k].dtype) for k in update}


def global_norm(update: Tensors) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in update.values()))


def clip_update(update: Tensors, max_norm: float) -> dict[str, torch.Tensor]:
    """Scale the whole update by ``min(1, max_norm / ||update||_2)`` (Flower's ``compute_clip_model_update``)."""
    if max_norm <= 0:
        raise ValueError("clip norm must be positive")
    norm = global_norm(update)
    factor = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return {k: t * factor for k, t in update.items()}


def add_gaussian_noise(update: Tensors, std: float, generator: torch.Generator | None = None
                       ) -> dict[str, torch.Tensor]:
    """Add i.i.d. N(0, std^2) to every coordinate."""
    if std < 0:
        raise ValueError("noise std must be non-negative")
    return {k: t + std * torch.randn(t.shape, generator=generator, dtype=t.dtype) for k, t in update.items()}


def _k(ratio: float, n: int) -> int:
    if not 0 < ratio <= 1:
        raise ValueError(f"sparsification ratio must be in (0, 1], got {ratio}")
    return min(n, max(1, math.ceil(ratio * n)))


def _scatter(update: Tensors, flat_keep: torch.Tensor) -> dict[str, torch.Tensor]:
    out, start = {}, 0
    for k, t in update.items():
        n = t.numel()
        mask = flat_keep[start:start + n].view(t.shape)
        out[k] = torch.where(mask, t, torch.zeros_like(t))
        start += n
    return out


def topk_sparsify(update: Tensors, ratio: float, scope: str = "tensor") -> dict[str, torch.Tensor]:
    """Keep exactly ``ceil(ratio * n)`` largest-magnitude entries (per tensor or globally), zero the rest."""
    if scope == "tensor":
        return {name: topk_sparsify({name: t}, ratio, "global")[name] for name, t in update.items()}
    if scope != "global":
        raise ValueError(f"scope must be 'tensor' or 'global', got {scope!r}")
    flat = torch.cat([t.reshape(-1) for t in update.values()])
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.topk(flat.abs(), _k(ratio, flat.numel())).indices] = True
    return _scatter(update, keep)


def randk_sparsify(update: Tensors, ratio: float, scope: str = "tensor",
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Keep exactly ``ceil(ratio * n)`` uniformly random entries (per tensor or globally), zero the rest."""
    if scope == "tensor":
        return {name: randk_sparsify({name: t}, ratio, "global", generator)[name] for name, t in update.items()}
    if scope != "global":
        raise ValueError(f"scope must be 'tensor' or 'global', got {scope!r}")
    n = sum(t.numel() for t in update.values())
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.randperm(n, generator=generator)[:_k(ratio, n)]] = True
    return _scatter(update, keep)


def quantize_update(update: Tensors, bits: int) -> dict[str, torch.Tensor]:
    """Uniform quantization of each tensor to ``2**bits`` levels between its min and max."""
    if bits < 1:
        raise ValueError("bits must be >= 1")
    out = {}
    levels = 2 ** bits - 1
    for k, t in update.items():
        lo, hi = t.min(), t.max()
        if float(hi - lo) == 0.0:
            out[k] = t.clone()
            continue
        step = (hi - lo) / levels
        out[k] = lo + torch.round((t - lo) / step) * step
    return out


# ---- configured pipeline -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpdateDefenses:
    """The update-level defenses of ``[defense]`` (0 = off)."""

    clip_norm: float = 0.0
    noise_std: float = 0.0
    topk_ratio: float = 0.0
    randk_ratio: float = 0.0
    sparsify_scope: str = "tensor"
    quant_bits: int = 0

    @property
    def active(self) -> bool:
        return bool(self.clip_norm or self.noise_std or self.topk_ratio or self.randk_ratio or self.quant_bits)


def defend_update(update: Tensors, d: UpdateDefenses, generator: torch.Generator | None = None
                  ) -> dict[str, torch.Tensor]:
    out = dict(update)
    if d.clip_norm:
        out = clip_update(out, d.clip_norm)
    if d.noise_std:
        out = add_gaussian_noise(out, d.noise_std, generator)
    if d.topk_ratio:
        out = topk_sparsify(out, d.topk_ratio, d.sparsify_scope)
    if d.randk_ratio:
        out = randk_sparsify(out, d.randk_ratio, d.sparsify_scope, generator)
    if d.quant_bits:
        out = quantize_update(out, d.quant_bits)
    return out


def defend_weights(before: Tensors, after: Tensors, d: UpdateDefenses, seed: int) -> dict[str, torch.Tensor]:
    """``before + defend(after - before)`` for the tensors in ``after`` (in float64, cast back)."""
    if not d.active:
        return dict(after)
    gen = torch.Generator().manual_seed(seed)
    return apply_update(before, defend_update(update_of(before, after), d, gen))


# ---- secure aggregation (additive pairwise masks) ---------------------------------------------------------
def pair_seed(secret: str, server_round: int, i: int, j: int) -> int:
    lo, hi = min(i, j), max(i, j)
    digest = hashlib.sha256(f"{secret}|{server_round}|{lo}|{hi}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def pairwise_masks(client: int, cohort: list[int], shapes: Mapping[str, torch.Size], *, secret: str,
                   server_round: int, scale: float = 10.0) -> dict[str, torch.Tensor]:
    """Sum over partners j of ``+m_ij`` (client < j) or ``-m_ij`` (client > j); sums to zero over the cohort."""
    total = {k: torch.zeros(s, dtype=torch.float64) for k, s in shapes.items()}
    for j in cohort:
        if j == client:
            continue
        gen = torch.Generator().manual_seed(pair_seed(secret, server_round, client, j))
        sign = 1.0 if client < j else -1.0
        for k, s in shapes.items():
            total[k] += sign * scale * torch.randn(s, generator=gen, dtype=torch.float64)
    return total


def mask_weights(weights: Tensors, weight: float, client: int, cohort: list[int], *, secret: str,
                 server_round: int, scale: float = 10.0) -> dict[str, torch.Tensor]:
    """What a SecAgg client sends so that FedAvg's *weighted* sum ``sum_i n_i * sent_i`` is unmasked:
    ``sent_i = w_i + mask_i / n_i``."""
    masks = pairwise_masks(client, cohort, {k: t.shape for k, t in weights.items()}, secret=secret,
                           server_round=server_round, scale=scale)
    return {k: (t.double() + masks[k] / weight).to(t.dtype) for k, t in weights.items()}


# ---- local-training defenses (label smoothing, mixup) ------------------------------------------------------
def smoothed_step_loss(smoothing: float):
    """``fn(model, x, y) -> loss`` with label smoothing, for ``train_locally(step_loss=...)``."""
    def step_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(x), y, label_smoothing=smoothing)
    return step_loss


def mixup_step_loss(alpha: float, seed: int, smoothing: float = 0.0):
    """``fn(model, x, y) -> loss`` mixing each batch with a seeded permutation of itself (Zhang et al. 2018)."""
    gen = torch.Generator().manual_seed(seed)

    def step_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lam = float(torch.distributions.Beta(alpha, alpha).sample()) if alpha > 0 else 1.0
        perm = torch.randperm(len(x), generator=gen)
        out = model(lam * x + (1 - lam) * x[perm])
        ce = nn.functional.cross_entropy
        return lam * ce(out, y, label_smoothing=smoothing) + (1 - lam) * ce(out, y[perm], label_smoothing=smoothing)
    return step_loss
