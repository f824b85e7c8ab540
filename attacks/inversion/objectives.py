"""Gradient-matching objectives: how far a dummy gradient (or simulated update) is from the observed one.

Every distance takes two lists of tensors aligned with ``list(model.parameters())`` and optional per-layer
weights, and returns a scalar tensor that is differentiable w.r.t. the dummy side.

* ``l2``        squared Euclidean distance summed over layers: DLG (Zhu et al., 2019), Geng et al. Alg. 2.
* ``l2-relative`` squared L2 divided by ||target||^2: same minimiser as ``l2``, but prior weights no longer
  depend on the gradient scale of the model (used by ``geng`` here; Geng et al. Alg. 2 use plain squared L2).
* ``l2-norm``   sum over layers of the (non-squared) layer norm: Geng et al. eq. 10.
* ``cosine``    1 - cosine similarity of the concatenated gradient: Inverting Gradients (Geiping et al., 2020).
* ``cosine-layerwise``  sum over layers of (1 - cosine): Geng et al. eq. 24 (FedAvg fake gradients).
* ``cosine-masked``  ``cosine`` on the coordinates where the observed target is non-zero only: the attack adapted
  to top-k / random-k sparsification (the server knows which coordinates were sent: the non-zero ones), so the
  dropped coordinates of the dummy gradient are not pulled towards 0.

Objectives apply to FedSGD gradients and to FedAvg updates alike: a FedAvg update is compared in its
fake-gradient form (W0 - WT) / (T * lr) (Geng et al. Sec. 3.5), whether the dummy side is a single gradient
(Geng) or an unrolled simulation of the T local steps (``fedsim.attacks.inversion.fedavg``).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

Distance = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor], Sequence[float]], torch.Tensor]


def _l2(dummy, target, weights):
    return sum(w * (d - t).pow(2).sum() for d, t, w in zip(dummy, target, weights))


def _l2_relative(dummy, target, weights):
    num = sum(w * (d - t).pow(2).sum() for d, t, w in zip(dummy, target, weights))
    den = sum(w * t.pow(2).sum() for t, w in zip(target, weights))
    return num / den.clamp_min(1e-30)


def _l2_norm(dummy, target, weights):
    return sum(w * (d - t).pow(2).sum().clamp_min(1e-30).sqrt() for d, t, w in zip(dummy, target, weights))


def _cosine(dummy, target, weights):
    # 1 - cos(a, b) = ||a/|a| - b/|b|||^2 / 2: no cancellation when the gradients are nearly parallel (on
    # untrained models 1 - cos is ~1e-5 already at a random input, below float32's resolution of 1 - cos)
    na = sum(w * d.pow(2).sum() for d, w in zip(dummy, weights)).clamp_min(1e-30).sqrt()
    nb = sum(w * t.pow(2).sum() for t, w in zip(target, weights)).clamp_min(1e-30).sqrt()
    return 0.5 * sum(w * (d / na - t / nb).pow(2).sum() for d, t, w in zip(dummy, target, weights))


def _cosine_layerwise(dummy, target, weights):
    total = 0.0
    for d, t, w in zip(dummy, target, weights):
        diff = d / d.norm().clamp_min(1e-30) - t / t.norm().clamp_min(1e-30)
        total = total + w * 0.5 * diff.pow(2).sum()
    return total


def _cosine_masked(dummy, target, weights):
    return _cosine([d * (t != 0).to(d.dtype) for d, t in zip(dummy, target)], target, weights)


DISTANCES: dict[str, Distance] = {
    "l2": _l2,
    "l2-relative": _l2_relative,
    "l2-norm": _l2_norm,
    "cosine": _cosine,
    "cosine-layerwise": _cosine_layerwise,
    "cosine-masked": _cosine_masked,
}


def _scheme_uniform(n: int) -> list[float]:
    return [1.0] * n


def _scheme_linear(n: int) -> list[float]:
    # first layer weight 1, last 1/n (breaching's "linear" weighting emphasises early layers)
    return [1.0 - i / n for i in range(n)]


def _scheme_exp(n: int) -> list[float]:
    return [math.exp(-i / max(n - 1, 1) * 2.0) for i in range(n)]


LAYER_WEIGHTS: dict[str, Callable[[int], list[float]]] = {
    "uniform": _scheme_uniform,
    "linear": _scheme_linear,
    "exp": _scheme_exp,
}


def layer_weights(spec: str | Sequence[float] | None, num_layers: int) -> list[float]:
    """Per-parameter weights: ``None``/"uniform", a named scheme ("linear", "exp"), or an explicit list."""
    if spec is None:
        return [1.0] * num_layers
    if isinstance(spec, str):
        if spec not in LAYER_WEIGHTS:
            raise ValueError(f"layer_weights: {spec!r} is not one of {sorted(LAYER_WEIGHTS)} or a list of floats")
        return LAYER_WEIGHTS[spec](num_layers)
    weights = [float(w) for w in spec]
    if len(weights) != num_layers:
        raise ValueError(f"layer_weights has {len(weights)} entries for {num_layers} parameter tensors")
    return weights


STABLE_COSINE_MAX_ELEMENTS = 2 ** 21


def _prepared_cosine(target: Sequence[torch.Tensor], weights: Sequence[float], stable: bool | None = None):
    """1 - cos against a fixed target, with the target side (its norm, t_hat = t / ||t||_w) computed once.

    Two forms of the same function: the difference form 0.5 sum_l w_l ||d_l / ||d||_w - t_hat_l||^2 (four passes
    over the dummy gradient; accurate where 1 - cos is ~1e-5, as on untrained sigmoid models in float32), and
    the dot form 1 - sum_l w_l <d_l, t_hat_l> / ||d||_w (two passes, per-layer sums added in float64; about 1 %
    relative error at 1 - cos ~ 1e-5). ``stable=None`` takes the difference form up to
    ``STABLE_COSINE_MAX_ELEMENTS`` gradient entries and the dot form above (ResNet-sized models, where the
    passes cost and 1 - cos is far from that floor)."""
    nb = sum(w * t.double().pow(2).sum() for t, w in zip(target, weights)).clamp_min(1e-30).sqrt()
    if stable is None:
        stable = sum(t.numel() for t in target) <= STABLE_COSINE_MAX_ELEMENTS
    if stable:
        t_unit = [(t.double() / nb).to(t.dtype) for t in target]

        def difference(dummy: Sequence[torch.Tensor]) -> torch.Tensor:
            na = sum(w * d.pow(2).sum() for d, w in zip(dummy, weights)).clamp_min(1e-30).sqrt()
            return 0.5 * sum(w * (d / na - t).pow(2).sum() for d, t, w in zip(dummy, t_unit, weights))
        return difference
    t_hat = [(t.double() * (w / nb)).to(t.dtype).reshape(-1) for t, w in zip(target, weights)]
    w64 = torch.tensor(list(weights), dtype=torch.float64, device=target[0].device)

    def dot_form(dummy: Sequence[torch.Tensor]) -> torch.Tensor:
        # torch.dot per layer: one fused pass each for <d, t_hat> and ||d||^2, no elementwise temporaries
        # (a third less time per step than (d * t).sum() and d.pow(2).sum() on ResNet-18, forward + backward).
        flat = [d.reshape(-1) for d in dummy]
        dot = torch.stack([torch.dot(d, t) for d, t in zip(flat, t_hat)]).double().sum()
        na2 = (torch.stack([torch.dot(d, d) for d in flat]).double() * w64).sum()
        return 1.0 - dot / na2.clamp_min(1e-30).sqrt()
    return dot_form


def prepare_distance(name: str, target: Sequence[torch.Tensor],
                     weights: Sequence[float]) -> Callable[[Sequence[torch.Tensor]], torch.Tensor]:
    """``distance(dummy)`` against a fixed target: what the optimisation loop calls every step."""
    fn = get_distance(name)
    target = list(target)
    weights = list(weights)
    if name == "cosine":
        return _prepared_cosine(target, weights)
    if name == "cosine-masked":  # the coordinates the client sent (non-zero), then the prepared cosine
        masks = [(t != 0).to(t.dtype) for t in target]
        inner = _prepared_cosine(target, weights)
        return lambda dummy: inner([d * m for d, m in zip(dummy, masks)])
    return lambda dummy: fn(list(dummy), target, weights)


def get_distance(name: str) -> Distance:
    if name not in DISTANCES:
        raise ValueError(f"distance: {name!r} is not one of {sorted(DISTANCES)}")
    return DISTANCES[name]


def gradient_distance(dummy: Sequence[torch.Tensor], target: Sequence[torch.Tensor], distance: str = "l2",
                      weights: str | Sequence[float] | None = None) -> torch.Tensor:
    """Distance between two gradient lists (aligned with the model's parameters)."""
    if len(dummy) != len(target):
        raise ValueError(f"gradient lists differ in length: {len(dummy)} vs {len(target)}")
    return get_distance(distance)(list(dummy), list(target), layer_weights(weights, len(dummy)))
