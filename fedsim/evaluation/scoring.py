"""Scoring: the only place where attack output meets ground truth (the audit channel).

Label rows: LeAcc / LnAcc / instance accuracy (``fedsim.core.metrics.labels``); inversion rows: PSNR / SSIM after
optimal label-aware alignment (``fedsim.core.metrics.images``), the exact share on the same alignment
(``fedsim.core.metrics.exact``) and, given an ``Identify``, identifiability with
its chance levels on the same alignment (``fedsim.evaluation.identify``). The ground truth of a FedAvg update is
every sample the client visited in the round (each once).
"""

from __future__ import annotations

from functools import singledispatch
from typing import Any

import torch

from fedsim.core.metrics.exact import exact_fraction
from fedsim.core.metrics.images import image_metrics, to_pixels
from fedsim.core.metrics.labels import label_metrics
from fedsim.core.types import AttackResult, GroundTruth, InversionResult, LabelResult
from fedsim.evaluation.identify import Identify, identify_scores


def truth_labels(truth: GroundTruth) -> torch.Tensor:
    """All sample visits of the round (what label counts of a fake gradient estimate)."""
    return truth.all_labels


def score(result: AttackResult, truth: GroundTruth | None, num_classes: int, mean, std,
          lpips_weights: str | None = None, ident: Identify | None = None) -> dict[str, Any]:
    """Metrics of one attack result (empty when it failed or no ground truth exists), by the result's type;
    ``ident``: score inversions' identifiability too (``ident_*``)."""
    if not result.ok or truth is None:
        return {}
    out = _metrics(result, truth, num_classes, mean, std, lpips_weights)
    if ident is not None and isinstance(result, InversionResult) and "permutation" in out:
        x_true, y_true = truth.unique_samples()
        rec, _ = padded(result.reconstruction, result.labels, len(x_true))
        try:
            out.update(identify_scores(rec, out["permutation"], x_true, y_true, mean, std, ident,
                                       seed=truth.server_round * 10_007 + truth.client_id))
        except Exception as exc:  # noqa: BLE001 - PSNR / SSIM stand without it
            out["score_error"] = f"identifiability: {type(exc).__name__}: {exc}"
    return out


@singledispatch
def _metrics(result: AttackResult, truth: GroundTruth, num_classes: int, mean, std,
             lpips_weights: str | None) -> dict[str, Any]:
    """A result type without metrics of its own scores nothing."""
    return {}


@_metrics.register
def _(result: LabelResult, truth: GroundTruth, num_classes: int, mean, std, lpips_weights: str | None
      ) -> dict[str, Any]:
    y = truth_labels(truth)
    out = label_metrics(y, result.restoration, num_classes)
    out["true_counts"] = torch.bincount(y, minlength=num_classes).tolist()
    return out


@_metrics.register
def _(result: InversionResult, truth: GroundTruth, num_classes: int, mean, std, lpips_weights: str | None
      ) -> dict[str, Any]:
    x_true, y_true = truth.unique_samples()
    labels = result.labels
    if labels is not None and len(labels) != len(result.reconstruction):
        labels = None  # one image per class row (analytic-fc), not one per restored label: matched by PSNR alone
    rec, labels_hat = padded(result.reconstruction, labels, len(x_true))
    m = image_metrics(rec, x_true, mean, std, labels_hat=labels_hat, labels_true=y_true,
                      lpips=True, lpips_weights=lpips_weights)  # LPIPS only from local weights
    out = {k: v for k, v in m.items() if isinstance(v, (int, float, list, str, bool))}
    out["unreconstructed"] = max(0, len(x_true) - len(result.reconstruction))
    out["psnr_chance"] = chance_psnr(x_true, mean, std)
    out["exact_fraction"] = exact_fraction(rec, x_true, mean, std, m["permutation"])  # max-abs pixel error < 1e-3
    return out


def chance_psnr(x_true: torch.Tensor, mean, std) -> float:
    """Mean PSNR (dB, pixel space) of a blind guess, the constant dataset-mean image (zero in normalised space,
    what :func:`padded` puts in for an image the attack did not recover), against each true image."""
    gt = to_pixels(x_true, mean, std)
    mse = (gt - to_pixels(torch.zeros_like(x_true[:1]), mean, std)).pow(2).flatten(1).mean(1)
    return float((10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))).mean())


def padded(reconstruction: torch.Tensor, labels: torch.Tensor | None, n: int
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """When the attacker reconstructed fewer images than the client used (it must estimate K, e.g. the expected
    batch of a DP-SGD client whose realised Poisson batch was larger), the missing ones count as the dataset-mean
    image (zero in normalised space) with no label: a sample the attack did not recover scores at that baseline.
    More reconstructions than samples are matched one-to-one and the extra ones ignored (``align``)."""
    missing = n - len(reconstruction)
    if missing <= 0:
        return reconstruction, labels
    pad = reconstruction.new_zeros((missing, *reconstruction.shape[1:]))
    rec = torch.cat([reconstruction, pad])
    if labels is not None:
        labels = torch.cat([labels, labels.new_full((missing,), -1)])
    return rec, labels
