"""LLG: label leakage from gradients (Wainakh, Ventola, Muessig, Keim, Garcia Cordero, Zimmer, Grube,
Kersting, Muehlhaeuser, "User-Level Label Leakage from Gradients in Federated Learning", PETS 2022).

Let g_i be the sum of classifier weight-gradient row i (g_i = mean_k (p_ki - y_ki) O_k, O_k = sum of the
classifier input of sample k). Property 1: negative g_i means class i is present. Property 2: each sample of
class i moves g_i by about the same "impact" m < 0.

* ``llg`` (LLG, simple): m = (sum of the negative g_i) / K, estimated from the gradient itself.
  Stage 1: every class with g_i < 0 gets one label and g_i -= m. Stage 2: until K labels, pick
  j = argmin g, add j, and g_j -= m (the class just picked: a peer implementation decrements the stale
  index of stage 1's loop, so the same class is picked over and over).
* ``llg+`` (LLG+ / LLG*, impact-based): impact and offset from dummy inputs through the current model
  (``dummy_inputs`` = auxiliary data gives LLG*): m = -mean_k(O_k) / K, per-class offset
  s_i = mean_k p_ki O_k (what g_i would be with no sample of class i); stage 2 runs on g - s.
Needs no classifier bias (fallback for bias-needing methods); relies on O_k > 0 (ReLU-like classifier input).
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.attacks.labels.common import check_num_samples, dummy_inputs, features_and_logits, last_layer
from fedsim.core.errors import AttackNotApplicable
from fedsim.core.types import LabelRestoration


def greedy_stages(g: torch.Tensor, impact: torch.Tensor | float, num_samples: int,
                  offset: torch.Tensor | float = 0.0) -> list[int]:
    """LLG's two stages on row sums ``g`` with per-class (or scalar) ``impact`` (< 0) and ``offset``."""
    g = g.double().clone()
    impact_t = torch.as_tensor(impact, dtype=torch.float64, device=g.device).expand_as(g).clone()
    labels: list[int] = []
    negatives = [i for i in torch.argsort(g).tolist() if g[i] < 0][:num_samples]  # most negative first
    for idx in negatives:  # stage 1
        labels.append(idx)
        g[idx] -= impact_t[idx]
    g = g - offset  # stage 2
    while len(labels) < num_samples:
        selected = int(torch.argmin(g))
        labels.append(selected)
        g[selected] -= impact_t[selected]  # the selected class, not stage 1's loop index
    return labels


def _result(method: str, labels: list[int], num_classes: int, extras: dict, device: torch.device) -> LabelRestoration:
    picked = torch.tensor(labels, dtype=torch.long, device=device)
    counts = torch.bincount(picked, minlength=num_classes)
    return LabelRestoration(method=method, counts=counts, labels=torch.sort(picked).values,
                            extras=extras)


def restore_llg(model: nn.Module, gradients, num_samples: int, **options) -> LabelRestoration:
    k = check_num_samples(num_samples)
    _, gw, _ = last_layer(model, gradients)
    g = gw.sum(dim=1)
    neg = g[g < 0]
    impact = float(neg.sum() / k) if len(neg) else float(g.min() / k)
    if impact >= 0:  # no negative row at all: fall back to the smallest row sum
        impact = -float(g.abs().max() / k) or -1.0
    labels = greedy_stages(g, impact, k)
    return _result("llg", labels, len(g), {"impact": impact, "row_sums": g}, g.device)


def restore_llg_plus(model: nn.Module, gradients, num_samples: int, **options) -> LabelRestoration:
    k = check_num_samples(num_samples)
    _, gw, _ = last_layer(model, gradients)
    g = gw.sum(dim=1)
    x = dummy_inputs(model, int(options.get("num_dummy", k)), options)
    e, z = features_and_logits(model, x)
    o = e.sum(dim=1)  # O_k
    p = torch.softmax(z, dim=-1)
    impact = -float(o.mean()) / k
    if impact >= 0:
        raise AttackNotApplicable("llg+: the dummy classifier inputs sum to <= 0 (negative activations?); use "
                                  "'llg' or 'ilrg'")
    offset = (p * o[:, None]).mean(dim=0)
    labels = greedy_stages(g, impact, k, offset=offset)
    return _result("llg+", labels, len(g), {"impact": impact, "offset": offset, "row_sums": g}, g.device)
