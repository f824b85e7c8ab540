"""Scoring: the only place where attack output meets ground truth (the audit channel).

Label rows: LeAcc / LnAcc / instance accuracy (``fedsim.metrics.labels``); inversion rows: PSNR / SSIM after
optimal label-aware alignment (``fedsim.metrics.images``). The ground truth of a FedAvg update is every sample
the client visited in the round (each once).
"""

from __future__ import annotations

from typing import Any

import torch

from fedsim.metrics.images import image_metrics
from fedsim.metrics.labels import label_metrics
from fedsim.types import AttackResult, GroundTruth


def truth_labels(truth: GroundTruth) -> torch.Tensor:
    """All sample visits of the round (what label counts of a fake gradient estimate)."""
    return truth.all_labels


def score(result: AttackResult, truth: GroundTruth | None, num_classes: int, mean, std,
          lpips_weights: str | None = None) -> dict[str, Any]:
    """Metrics of one attack result (empty when it failed or no ground truth exists)."""
    if not result.ok or truth is None:
        return {}
    if result.attack == "label":
        restored = result.restoration
        y = truth_labels(truth)
        out = label_metrics(y, restored, num_classes)
        out["true_counts"] = torch.bincount(y, minlength=num_classes).tolist()
        return out
    if result.attack == "inversion":
        x_true, y_true = truth.unique_samples()
        m = image_metrics(result.reconstruction, x_true, mean, std, labels_hat=result.labels, labels_true=y_true,
                          lpips=True, lpips_weights=lpips_weights)  # LPIPS only from local weights
        return {k: v for k, v in m.items() if isinstance(v, (int, float, list, str, bool))}
    return {}
