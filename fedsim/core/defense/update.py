"""``[defense.update]``: clip, noise, sparsify (top-k / random-k) and quantise the update ``W_after - W_before`` a
client sends; applied by ``fedsim.clients.mods.update_defense_mod`` (applier ``"update"``), replayed by the curious
server's shadow (``fedsim.attacks.defense_view``). The mechanisms are pure functions here (no Flower).

Every function takes a mapping name -> tensor (the update a client is about to send) and returns a new mapping;
inputs are never modified. :func:`defend_update` applies the configured ones in a fixed order:

    clip (L2 of the whole update) -> Gaussian noise -> top-k or random-k sparsification -> uniform quantization

Noise comes after clipping (the Gaussian mechanism needs bounded sensitivity) and before compression, so
sparsification/quantization are post-processing and do not weaken whatever the noise guarantees.

Top-k / random-k (Aji & Heafield, EMNLP 2017; Zhu et al., NeurIPS 2019 evaluate pruning against DLG):
``k = ceil(ratio * n)`` entries are kept, exactly, where ``n`` is the tensor's size (``scope="tensor"``, each
tensor keeps its own k) or the size of the whole update (``scope="global"``, one k over all tensors together).
Ties in magnitude are broken by ``torch.topk``'s index order, so exactly k survive. Random-k does not rescale the
survivors (it is a plain sparsifier, biased towards zero).

Quantization: per tensor, ``2**bits`` uniformly spaced levels between the tensor's min and max (deterministic
round-to-nearest); both end points are sent in the clear as a real scheme would.

torch is imported inside the functions: loading a config reads this module's schema and object without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from fedsim.core.defense.base import CLIENT_MOD, Applier, Defense, opt

if TYPE_CHECKING:
    import torch

Tensors = Mapping[str, "torch.Tensor"]


@dataclass(frozen=True)
class UpdateDefense:
    """``[defense.update]``: post-processing of the update a client sends (all 0 = off)."""

    clip_norm: float = opt(0.0, minimum=0.0, doc="L2 clip of the whole update W_after-W_before (0 = off)")
    noise_std: float = opt(0.0, minimum=0.0, doc="Gaussian noise std added to each update coordinate")
    topk_ratio: float = opt(0.0, minimum=0.0, maximum=1.0, doc="keep ceil(ratio*n) largest entries (0 = off)")
    randk_ratio: float = opt(0.0, minimum=0.0, maximum=1.0, doc="keep ceil(ratio*n) random entries (0 = off)")
    sparsify_scope: str = opt("tensor", choices=("tensor", "global"), doc="n per tensor or over the update")
    quant_bits: int = opt(0, minimum=0, maximum=16, doc="uniform quantization of the update (0 = off)")


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


class UpdateDefenseDefense(Defense):
    """``[defense.update]``: clip / noise / sparsify / quantise the update (``fedsim.clients.mods.update_defense_mod``)."""

    table, schema = "update", UpdateDefense

    def on(self, t: UpdateDefense) -> bool:
        return bool(t.clip_norm or t.noise_std or t.topk_ratio or t.randk_ratio or t.quant_bits)

    def parts(self, t: UpdateDefense) -> list[tuple[str, str]]:
        named = ((t.topk_ratio, f"top-k {_pct(t.topk_ratio)}", "top-k"),
                 (t.randk_ratio, f"random-k {_pct(t.randk_ratio)}", "random-k"),
                 (t.clip_norm, f"update clip {t.clip_norm:g}", "update clip"),
                 (t.noise_std, f"update noise {t.noise_std:g}", "update noise"),
                 (t.quant_bits, f"{t.quant_bits}-bit quantization", "quantization"))
        return [(label, family) for amount, label, family in named if amount]

    def appliers(self, t: UpdateDefense) -> tuple[Applier, ...]:
        return (Applier(CLIENT_MOD, "update", 40),)


UPDATE = UpdateDefenseDefense()


# ---- the mechanisms ----------------------------------------------------------------------------------------
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
    import torch

    if std < 0:
        raise ValueError("noise std must be non-negative")
    return {k: t + std * torch.randn(t.shape, generator=generator, dtype=t.dtype) for k, t in update.items()}


def _k(ratio: float, n: int) -> int:
    if not 0 < ratio <= 1:
        raise ValueError(f"sparsification ratio must be in (0, 1], got {ratio}")
    return min(n, max(1, math.ceil(ratio * n)))


def _scatter(update: Tensors, flat_keep: torch.Tensor) -> dict[str, torch.Tensor]:
    import torch

    out, start = {}, 0
    for k, t in update.items():
        n = t.numel()
        mask = flat_keep[start:start + n].view(t.shape)
        out[k] = torch.where(mask, t, torch.zeros_like(t))
        start += n
    return out


def topk_sparsify(update: Tensors, ratio: float, scope: str = "tensor") -> dict[str, torch.Tensor]:
    """Keep exactly ``ceil(ratio * n)`` largest-magnitude entries (per tensor or globally), zero the rest."""
    import torch

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
    import torch

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
    import torch

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


def defend_update(update: Tensors, d: UpdateDefense, generator: torch.Generator | None = None
                  ) -> dict[str, torch.Tensor]:
    """The configured mechanisms of ``d`` in the fixed order above."""
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


def defend_weights(before: Tensors, after: Tensors, d: UpdateDefense, seed: int) -> dict[str, torch.Tensor]:
    """``before + defend(after - before)`` for the tensors in ``after`` (in float64, cast back)."""
    import torch

    if not UPDATE.on(d):
        return dict(after)
    gen = torch.Generator().manual_seed(seed)
    return apply_update(before, defend_update(update_of(before, after), d, gen))
