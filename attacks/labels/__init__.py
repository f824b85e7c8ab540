"""Label restoration from (fake) gradients of the classifier layer.

``restore_labels(method, model=..., gradients=..., num_samples=K, **options) -> LabelRestoration`` (K: the
samples the gradient averages, the row's ``num_samples``; B, the client's batch size, is ``batch_size``); the
methods live one per file and are listed in ``LABEL_METHODS`` (registry.py: one ``fedsim.attacks.records.AttackMethod``
each; ``register_label_method`` adds one from outside). Conventions for K under FedAvg
and for presence-only methods: see ``attacks/labels/common.py``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import torch
from torch import nn

from fedsim.attacks.labels.common import samples_covered
from fedsim.attacks.labels.registry import LABEL_METHODS, register_label_method
from fedsim.attacks.records import AttackMethod
from fedsim.core.types import LabelRestoration


def restore_labels(method: str | AttackMethod, *, model: nn.Module, gradients: Sequence[torch.Tensor],
                   num_samples: int, **options) -> LabelRestoration:
    """Run a registered label restoration method (its name, or its record as the caller looked it up);
    ``seconds`` is the restoration time (gradients given)."""
    fn = method if isinstance(method, AttackMethod) else LABEL_METHODS[method]  # unknown: one-line ConfigError
    start = time.perf_counter()
    result = fn(model, list(gradients), num_samples, **options)
    return dataclasses.replace(result, seconds=time.perf_counter() - start)


__all__ = ["LABEL_METHODS", "register_label_method", "restore_labels", "samples_covered"]
