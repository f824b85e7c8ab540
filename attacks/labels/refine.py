"""``ilrg-refine``: fedsim's own count estimator (not a published method), built on iLRG's equations (Ma et al.,
"Instance-wise Batch Label Restoration via Gradients in Federated Learning", ICLR 2023).

iLRG's bias equation is exact: db = p_bar - k / K, with p_bar the batch-mean post-softmax probability, so
k = K (p_bar - db) and the whole problem is estimating p_bar to better than 0.5 / K per class. iLRG does it
through class-wise embeddings dW_i / db_i, which become ratios of two small differences when K >> C (db_i is
p_bar_i - k_i/K, both ~1/C) and fall apart (LnAcc ~0.2 at K = 128 on FCN-3 / MNIST).

Here the batch-mean embedding e_bar is estimated from all rows at once. To first order
dW_i = db_i e_bar - (k_i / K) d_i (d_i = class-mean embedding minus e_bar), so e_bar is the weighted
least-squares fit of dW_i ~ db_i e_bar with weights 1 / k_i (a class with few samples contaminates its row
least; absent classes, k_i = 0, pin e_bar exactly - iLRG's "bypass Approx. 2" case). Iterate: counts from
p_bar = softmax(W e_bar + b), weights from the counts, e_bar again (``iters``, default 3). Finally round to
integers summing to K. Class-wise embeddings are returned as e_i = (p_bar_i e_bar - dW_i) / (k_i / K).
Needs the classifier bias (fallback: ``llg``).
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.attacks.labels.common import (check_num_samples, counts_to_labels, last_layer, require_bias, round_to_total,
                                   softmax_of_embeddings)
from fedsim.core.types import LabelRestoration


def restore_ilrg_refine(model: nn.Module, gradients, num_samples: int, iters: int = 3, min_count: float = 0.5,
                        **options) -> LabelRestoration:
    k = check_num_samples(num_samples)
    fc, gw, gb = last_layer(model, gradients)
    gb = require_bias(gb, "ilrg-refine", "llg")
    weights = torch.ones_like(gb)
    for _ in range(iters + 1):
        denom = float((weights * gb) @ gb)
        e_bar = ((weights * gb) @ gw) / (denom if denom != 0.0 else 1e-300)
        p_bar = softmax_of_embeddings(fc, e_bar[None])[0]
        real = k * (p_bar - gb)
        weights = 1.0 / real.clamp_min(min_count)
    counts = round_to_total(real, k)
    share = (real.clamp_min(min_count) / k)[:, None]
    emb = (p_bar[:, None] * e_bar[None] - gw) / share
    probs = softmax_of_embeddings(fc, emb)
    return LabelRestoration(method="ilrg-refine", counts=counts, labels=counts_to_labels(counts),
                            embeddings=emb.to(fc.weight.dtype), probabilities=probs.to(fc.weight.dtype),
                            extras={"real_counts": real, "mean_embedding": e_bar, "mean_probability": p_bar})
