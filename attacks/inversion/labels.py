"""Labels of the dummy batch: given (from label restoration), optimised jointly (DLG), or iDLG's analytic rule.

* Given labels (``label_mode="given"``): a LongTensor[K] of restored labels (or per-class counts, or a
  ``LabelRestoration``). The dummy inputs are unordered, so labels are assigned to them by count: the first
  n_0 dummies get class 0, the next n_1 class 1 and so on (iLRG, Ma et al. 2023, Sec. 4.4). Any assignment
  produces the same batch-mean gradient, so this loses nothing.
* Joint (``label_mode="joint"``): DLG (Zhu et al. 2019) optimises dummy logits ``y_hat`` [K, C] (init N(0,1))
  together with the inputs; the loss uses the soft target softmax(y_hat).
* iDLG (``label_mode="idlg"``, Zhao et al. 2020): batch 1 only; the true class is the row of the classifier's
  weight gradient whose sum is negative (with non-negative activations), equivalently the most negative
  bias-gradient entry.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.core.models.zoo import classifier_layer


def labels_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """Per-class counts [C] -> sorted label list [K]."""
    counts = torch.as_tensor(counts).long()
    return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)


def as_label_list(labels, sort: bool = True) -> torch.Tensor:
    """Accept LongTensor[K] / list of ints / LabelRestoration (``.labels``); return a LongTensor[K].

    Sorting is the count-based assignment of iLRG Sec. 4.4 (dummy k gets the k-th smallest label); the
    unrolled FedAvg objective keeps the given order because there the split into local batches matters."""
    if hasattr(labels, "labels") and not isinstance(labels, torch.Tensor):
        labels = labels.labels
    labels = torch.as_tensor(labels).long().flatten()
    return labels.sort().values if sort else labels


def classifier_index(model: nn.Module) -> tuple[int, int | None]:
    """Indices in ``list(model.parameters())`` of the classifier's weight and bias (bias may be None)."""
    layer = classifier_layer(model)
    ids = {id(p): i for i, p in enumerate(model.parameters())}
    w = ids[id(layer.weight)]
    b = ids[id(layer.bias)] if layer.bias is not None else None
    return w, b


def idlg_label(model: nn.Module, gradients: list[torch.Tensor]) -> torch.Tensor:
    """iDLG: the class whose classifier weight-gradient row sums to a negative value (the minimum row sum)."""
    w, b = classifier_index(model)
    if b is not None:
        return gradients[b].argmin().view(1)
    return gradients[w].sum(-1).argmin().view(1)
