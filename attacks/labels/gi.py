"""GradInversion batch label restoration (Yin et al., "See through Gradients: Image Batch Recovery via
GradInversion", CVPR 2021) and its extension to repeated labels (Ma et al., iLRG, ICLR 2023, Sec. 4.2).

``gi`` (Yin): take the minimum of each row of the classifier weight gradient (over the input features) and
return the K classes with the most negative minimum, each once: this assumes K distinct labels and K <= C,
so with repeated labels it returns absent classes (accuracy falls linearly with the number of repeats, as
Geng et al. Table 3 shows). ``gi-ext`` (iLRG's extension): every class whose row minimum is negative is
present (``presence_only``; counts beyond presence are a uniform fill). Both rely on a non-negative
classifier input (ReLU); Swish / LeakyReLU make absent rows negative too. No classifier bias needed.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.attacks.labels.common import check_num_samples, counts_to_labels, fill_presence, last_layer
from fedsim.core.types import LabelRestoration


def _row_min(model: nn.Module, gradients) -> torch.Tensor:
    _, gw, _ = last_layer(model, gradients)
    return gw.min(dim=1).values


def restore_gi(model: nn.Module, gradients, num_samples: int, **options) -> LabelRestoration:
    k = check_num_samples(num_samples)
    row_min = _row_min(model, gradients)
    c = len(row_min)
    chosen = torch.argsort(row_min)[: min(k, c)]
    present = torch.zeros(c, dtype=torch.bool, device=row_min.device)
    present[chosen] = True
    counts = fill_presence(present, -row_min, k)  # K <= C: exactly one each (Yin's assumption)
    return LabelRestoration(method="gi", counts=counts, labels=counts_to_labels(counts), presence_only=k > c,
                            extras={"presence": present, "row_min": row_min})


def restore_gi_ext(model: nn.Module, gradients, num_samples: int, **options) -> LabelRestoration:
    k = check_num_samples(num_samples)
    row_min = _row_min(model, gradients)
    present = row_min < 0
    counts = fill_presence(present, -row_min, k)
    return LabelRestoration(method="gi-ext", counts=counts, labels=counts_to_labels(counts),
                            presence_only=int(present.sum()) != k, extras={"presence": present, "row_min": row_min})
