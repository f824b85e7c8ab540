"""Exactness of a reconstruction: the share of the batch recovered to a max-abs pixel error below 1e-3.

PSNR is unbounded for an exact hit (it only reflects the float rounding), so an exact attack (SPEAR, Dimitrov et
al., NeurIPS 2024; analytic-fc at batch 1) is scored by ``exact_fraction``: after the same optimal alignment the
other image metrics use (``fedsim.core.metrics.images.align``, passed in as ``permutation``), in pixel space [0, 1]
(denormalised with mean/std and clamped, as for PSNR), the share of ground-truth images whose matched
reconstruction differs from it by less than ``tol`` (default 1e-3, a quarter of one 8-bit grey level) at every
pixel. Missing reconstructions (padded as the mean image) are never exact.
"""

from __future__ import annotations

from typing import Sequence

import torch

from fedsim.core.metrics.images import to_pixels

EXACT_TOL = 1e-3


def max_abs_errors(reconstruction: torch.Tensor, ground_truth: torch.Tensor, mean, std,
                   permutation: Sequence[int]) -> torch.Tensor:
    """Per ground-truth image, the max-abs pixel error of the reconstruction aligned to it (``permutation[j]`` is
    the reconstruction matched to ground-truth image j)."""
    gt = to_pixels(ground_truth, mean, std)
    rec = to_pixels(reconstruction.to(gt.device), mean, std)
    if len(permutation) != len(gt):
        raise ValueError(f"permutation has {len(permutation)} entries for {len(gt)} ground-truth images")
    idx = torch.as_tensor(list(permutation), dtype=torch.long, device=rec.device)
    return (rec[idx] - gt).abs().flatten(1).amax(1)


def exact_fraction(reconstruction: torch.Tensor, ground_truth: torch.Tensor, mean, std,
                   permutation: Sequence[int], tol: float = EXACT_TOL) -> float:
    """Share (0..1) of the ground-truth images recovered exactly: max-abs pixel error below ``tol`` after alignment."""
    err = max_abs_errors(reconstruction, ground_truth, mean, std, permutation)
    return float((err < tol).to(torch.float64).mean()) if err.numel() else 0.0
