"""iDLG label restoration (Zhao, Mopuri, Bilen, "iDLG: Improved Deep Leakage from Gradients", 2020).

Single sample: with a non-negative classifier input e (ReLU, Sigmoid), the classifier weight gradient row
i is (p_i - y_i) e, so the only row with a negative sum is the label. Batch extension as in the iLRG paper
(Ma et al., ICLR 2023, Sec. 4.2): every class whose row sum is negative is reported present. Counts are only
determinable when K = 1 or when exactly K rows are negative (then each present class once); otherwise the
result is ``presence_only`` and counts beyond presence are a uniform fill (see ``common.fill_presence``).
Negative activations (Swish, LeakyReLU) break the sign argument; works without a classifier bias.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.attacks.labels.common import check_num_samples, counts_to_labels, fill_presence, last_layer
from fedsim.core.types import LabelRestoration


def restore_idlg(model: nn.Module, gradients, num_samples: int, **options) -> LabelRestoration:
    k = check_num_samples(num_samples)
    _, gw, _ = last_layer(model, gradients)
    rowsum = gw.sum(dim=1)
    if k == 1:
        counts = torch.zeros(len(rowsum), dtype=torch.long, device=rowsum.device)
        counts[int(torch.argmin(rowsum))] = 1
        presence_only = False
        present = counts > 0
    else:
        present = rowsum < 0
        counts = fill_presence(present, -rowsum, k)
        presence_only = int(present.sum()) != k
    return LabelRestoration(method="idlg", counts=counts, labels=counts_to_labels(counts),
                            presence_only=presence_only, extras={"presence": present, "row_sums": rowsum})
