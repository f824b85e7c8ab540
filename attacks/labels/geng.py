"""Zero-shot batch label counts with duplicates (Geng, Mou, Li, Li, Beyan, Decker, Rong, "Towards General Deep
Leakage in Federated Learning", 2021, Sec. 3.2, eq. 16), and fedsim's bias-row variant of it.

Feed dummy inputs (N(0,1) in model space by default; ``dummy_inputs`` to pass auxiliary data; ``num_dummy``,
default K) through the model to estimate the mean post-softmax probability p_bar and the mean summed
classifier input O_bar. Then

* ``geng`` (eq. 16 as published): k_n = K p_bar_n - K dW_n / O_bar, with dW_n the sum of weight-gradient row
  n (needs O_bar > 0, i.e. a ReLU-like classifier input; no bias needed).
* ``geng-bias`` (fedsim's own variant, not in the paper): with a classifier bias, db_n = p_bar_n - k_n / K
  exactly, so k_n = K (p_bar_n - db_n): the same p_bar estimate without eq. 16's approximation that every
  sample has the same O_k. Much better at large K (FCN-3 / MNIST, K = 128: LnAcc 0.82 vs 0.32 for eq. 16,
  docs/benchmarks/labels.md). Without a bias it raises and names ``geng``.

Real counts are rounded to integers summing to K (``common.round_to_total``). BN running statistics are
left untouched by the dummy forward. (Before 2026-11 ``geng`` meant the bias variant by default.)
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.attacks.labels.common import (check_num_samples, counts_to_labels, dummy_inputs, features_and_logits,
                                   last_layer, require_bias, round_to_total)
from fedsim.core.errors import AttackNotApplicable
from fedsim.core.types import LabelRestoration


def _dummy_statistics(model: nn.Module, k: int, options: dict) -> tuple[torch.Tensor, float]:
    """(p_bar [C], O_bar) from dummy inputs through the current model."""
    x = dummy_inputs(model, int(options.get("num_dummy", k)), options)
    e, z = features_and_logits(model, x)
    return torch.softmax(z, dim=-1).mean(dim=0), float(e.sum(dim=1).mean())


def _result(method: str, real: torch.Tensor, k: int, p_bar: torch.Tensor, source: str, o_bar: float,
            dtype: torch.dtype) -> LabelRestoration:
    counts = round_to_total(real, k)
    return LabelRestoration(method=method, counts=counts, labels=counts_to_labels(counts),
                            probabilities=p_bar.to(dtype),
                            extras={"real_counts": real, "source": source, "o_bar": o_bar})


def restore_geng(model: nn.Module, gradients, num_samples: int, **options) -> LabelRestoration:
    """Geng et al. eq. 16 (weight-gradient row sums)."""
    k = check_num_samples(num_samples)
    _, gw, _ = last_layer(model, gradients)
    p_bar, o_bar = _dummy_statistics(model, k, options)
    if o_bar <= 0:
        raise AttackNotApplicable("geng (eq. 16) needs a positive classifier input sum (ReLU-like); use "
                                  "'geng-bias' (classifier with a bias) or 'llg' instead")
    return _result("geng", k * p_bar - k * gw.sum(dim=1) / o_bar, k, p_bar, "weight", o_bar,
                   next(model.parameters()).dtype)


def restore_geng_bias(model: nn.Module, gradients, num_samples: int, **options) -> LabelRestoration:
    """fedsim's variant: Geng's dummy-input p_bar with the exact bias identity k = K (p_bar - db)."""
    k = check_num_samples(num_samples)
    _, _, gb = last_layer(model, gradients)
    gb = require_bias(gb, "geng-bias", "geng")
    p_bar, o_bar = _dummy_statistics(model, k, options)
    return _result("geng-bias", k * (p_bar - gb), k, p_bar, "bias", o_bar, next(model.parameters()).dtype)
