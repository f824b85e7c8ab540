"""Zero-shot batch label counts with duplicates (Geng, Mou, Li, Li, Beyan, Decker, Rong, "Towards General Deep
Leakage in Federated Learning", 2021, Sec. 3.2, eq. 16).

Feed K dummy inputs (N(0,1) in model space by default; ``dummy_inputs`` to pass auxiliary data) through the
model to estimate the mean post-softmax probability p_bar and the mean summed classifier input O_bar. Then

* with a classifier bias (default): db_n = p_bar_n - k_n / K exactly in expectation, so k_n = K (p_bar_n - db_n);
* without a bias, or ``use_bias=False``: eq. 16, k_n = K p_bar_n - K dW_n / O_bar with dW_n the sum of
  weight-gradient row n (needs O > 0, i.e. a ReLU-like classifier input).

Real counts are rounded to integers summing to K (``common.round_to_total``). BN running statistics are
left untouched by the dummy forward.
"""

from __future__ import annotations

import torch
from torch import nn

from attacks.labels.common import (check_batch_size, counts_to_labels, dummy_inputs, features_and_logits,
                                   last_layer, round_to_total)
from fedsim.types import LabelRestoration


def restore_geng(model: nn.Module, gradients, batch_size: int, use_bias: bool = True, **options) -> LabelRestoration:
    k = check_batch_size(batch_size)
    _, gw, gb = last_layer(model, gradients)
    x = dummy_inputs(model, int(options.get("num_dummy", k)), options)
    e, z = features_and_logits(model, x)
    p_bar = torch.softmax(z, dim=-1).mean(dim=0)
    o_bar = float(e.sum(dim=1).mean())
    if gb is not None and use_bias:
        real = k * (p_bar - gb)
        source = "bias"
    else:
        if o_bar <= 0:
            raise ValueError("geng without a classifier bias needs a positive classifier input sum (ReLU-like); "
                             "use 'llg' instead")
        real = k * p_bar - k * gw.sum(dim=1) / o_bar
        source = "weight"
    counts = round_to_total(real, k)
    return LabelRestoration(method="geng", counts=counts, labels=counts_to_labels(counts),
                            probabilities=p_bar.float(),
                            extras={"real_counts": real, "source": source, "o_bar": o_bar})
