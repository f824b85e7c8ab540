"""Image similarity after alignment: PSNR, SSIM, permutation-agnostic SSIM; LPIPS only with local weights.

Gradient inversion loses the order of the batch, so reconstructions are first matched one-to-one to the
ground truth by an optimal assignment (``scipy.optimize.linear_sum_assignment``) that maximises the summed
PSNR (Geng et al., Sec. 3.6, eq. 25). When both restored and true labels are given, the matching is
label-aware: a reconstruction may only be matched to a ground-truth image of the same label (pairs with
different labels get a prohibitive cost, so a label mistake still yields a complete matching); images whose
label is unique on both sides are thereby aligned directly, as in Geng et al.

All inputs are in the model's normalised space; they are denormalised with ``mean``/``std`` and clamped to
[0, 1] before scoring. Scores are computed on the reconstruction's device (the ground truth is moved there);
the one host crossing is :func:`host_array` (a K x K score matrix or a label list for scipy's solver), and
the numbers reach the host as Python floats for the row. PSNR uses MAX = 1. SSIM is torchmetrics' ``structural_similarity_index_measure``
(Gaussian window 11, sigma 1.5), with the window shrunk to fit images smaller than 11 pixels (8x8 digits).
The permutation-agnostic SSIM (Malcewicz et al., slides "Semantic Label Reconstruction") is the best mean SSIM
over all one-to-one assignments, again solved exactly with the Hungarian algorithm.

LPIPS (Zhang et al. 2018) uses torchmetrics' LPIPS linear layers (shipped in the wheel) on an AlexNet (or VGG)
backbone whose ImageNet weights must be a local file, ``lpips_weights=`` (``attack.lpips_weights``); they are
never downloaded and a randomly initialised backbone is never substituted: without the file ``lpips`` is None
and ``lpips_note`` says why.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

_MISMATCH_COST = 1e6


def host_array(t: torch.Tensor) -> np.ndarray:
    """The metrics' one host crossing: a small tensor (score matrix, labels) as numpy, for scipy's solver."""
    return t.detach().cpu().numpy()


def to_pixels(x: torch.Tensor, mean: Sequence[float] | float, std: Sequence[float] | float) -> torch.Tensor:
    """Model space -> pixel space [0, 1] (clamped), float64, shape [K, C, H, W], on ``x``'s device."""
    x = x.detach().to(torch.float64)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    m = torch.as_tensor(mean, dtype=torch.float64, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float64, device=x.device).view(-1, 1, 1)
    return (x * s + m).clamp(0.0, 1.0)


def psnr_matrix(rec: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, MAX=1) between every reconstruction (rows) and every ground truth (columns), pixel space."""
    mse = (rec.flatten(1)[:, None, :] - gt.flatten(1)[None, :, :]).pow(2).mean(-1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))


def _window(size: int) -> int:
    k = min(11, size)
    return k if k % 2 == 1 else k - 1


def ssim_pairs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM of aligned pairs a[i], b[i] (pixel space), via torchmetrics; window shrunk for small images."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    k = _window(min(a.shape[-2:]))
    sigma = 1.5 * k / 11.0
    val = structural_similarity_index_measure(a.float(), b.float(), data_range=1.0, kernel_size=k, sigma=sigma,
                                              reduction="none")
    return val.to(torch.float64).view(-1)


def ssim_matrix(rec: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    k1, k2 = rec.shape[0], gt.shape[0]
    a = rec.repeat_interleave(k2, 0)
    b = gt.repeat(k1, 1, 1, 1)
    return ssim_pairs(a, b).view(k1, k2)


def align(rec: torch.Tensor, gt: torch.Tensor, labels_hat=None, labels_true=None) -> tuple[list[int], bool]:
    """Optimal one-to-one matching maximising PSNR; returns (perm, label_aware) with rec[perm[j]] <-> gt[j].

    ``rec``/``gt`` are pixel-space batches of the same image shape, with at least as many reconstructions as
    ground-truth images (extra reconstructions stay unmatched). Label-aware when both label lists are given.
    """
    if rec.shape[1:] != gt.shape[1:] or len(rec) < len(gt):
        raise ValueError(f"reconstruction {tuple(rec.shape)} cannot be matched to ground truth {tuple(gt.shape)}")
    cost = -host_array(psnr_matrix(rec, gt.to(rec.device)))
    label_aware = labels_hat is not None and labels_true is not None
    if label_aware:
        lh = host_array(torch.as_tensor(labels_hat).view(-1))
        lt = host_array(torch.as_tensor(labels_true).view(-1))
        if len(lh) != rec.shape[0] or len(lt) != gt.shape[0]:
            raise ValueError("labels_hat / labels_true must have one label per image")
        cost = cost + _MISMATCH_COST * (lh[:, None] != lt[None, :])
    rows, cols = linear_sum_assignment(cost)
    perm = [0] * gt.shape[0]
    for r, c in zip(rows, cols):
        perm[int(c)] = int(r)
    return perm, label_aware


def permutation_agnostic_ssim(rec: torch.Tensor, gt: torch.Tensor) -> float:
    """max over one-to-one assignments of the mean SSIM (slides 004: SSIM_SMART = max_m mean SSIM)."""
    mat = host_array(ssim_matrix(rec, gt.to(rec.device)))
    rows, cols = linear_sum_assignment(-mat)
    return float(mat[rows, cols].mean())


LPIPS_NETS = ("alex", "vgg")


def lpips_available(lpips_weights: str | None = None) -> tuple[bool, str]:
    """LPIPS only from a local backbone weights file (``attack.lpips_weights``); never downloaded, never random."""
    if not lpips_weights:
        return False, ("unavailable: no local LPIPS backbone weights (attack.lpips_weights is empty; weights are "
                       "never downloaded and a random backbone is never substituted)")
    if not Path(lpips_weights).is_file():
        return False, f"unavailable: LPIPS backbone weights {lpips_weights!r} not found"
    return True, f"LPIPS (torchmetrics linear layers, backbone from {Path(lpips_weights).name})"


@functools.lru_cache(maxsize=4)
def _lpips_net(lpips_weights: str, net: str = "alex"):
    """torchmetrics' LPIPS module with its shipped linear layers and the backbone loaded from a local file.

    The file is a torchvision ``alexnet`` / ``vgg16`` state dict (``features.N.*`` keys; other keys ignored) or
    a full LPIPS state dict (``net.sliceK.N.*`` keys)."""
    from torchmetrics.functional.image.lpips import _LPIPS

    if net not in LPIPS_NETS:
        raise ValueError(f"lpips net: {net!r} is not one of {LPIPS_NETS}")
    model = _LPIPS(pretrained=True, net=net, pnet_rand=True)  # backbone built without weights, filled below
    state = torch.load(lpips_weights, map_location="cpu", weights_only=True)
    slices = {name: k for k in range(1, 6) for name, _ in getattr(model.net, f"slice{k}").named_children()}
    mapped = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features" and parts[1] in slices:
            mapped[f"net.slice{slices[parts[1]]}.{'.'.join(parts[1:])}"] = value
        elif parts[0] == "net":
            mapped[key] = value
    expected = {k for k in model.state_dict() if k.startswith("net.")}
    if set(mapped) != expected:
        raise ValueError(f"LPIPS weights {lpips_weights!r}: backbone tensors missing for {net!r} "
                         f"({len(expected - set(mapped))} of {len(expected)})")
    model.load_state_dict(mapped, strict=False)
    return model.eval()


def lpips_pairs(a: torch.Tensor, b: torch.Tensor, lpips_weights: str, net: str = "alex") -> list[float]:
    """LPIPS of aligned pairs a[i], b[i] (pixel space [0, 1], 3 channels; grey images are repeated)."""
    model = _lpips_net(str(lpips_weights), net)
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    if a.shape[1] == 1:
        a, b = a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1)
    with torch.no_grad():
        return model(a, b, normalize=True).view(-1).tolist()


def image_metrics(reconstruction: torch.Tensor, ground_truth: torch.Tensor, mean, std, labels_hat=None,
                  labels_true=None, lpips: bool = False, lpips_weights: str | None = None) -> dict:
    """Align reconstructions to the ground truth, then score them (pixel space, [0, 1]).

    Returns ``psnr`` / ``ssim`` / ``mse`` (means over aligned pairs), ``psnr_per_image`` / ``ssim_per_image``
    (in ground-truth order), ``ssim_perm_agnostic``, ``permutation`` (index of the reconstruction matched to
    each ground-truth image), ``label_aware``, ``label_matches`` (aligned pairs whose labels agree, when
    given), ``lpips`` (mean over aligned pairs when ``lpips_weights`` names a local backbone file, else None) and
    ``lpips_note``. ``lpips=True`` without weights only records why LPIPS is missing.
    """
    rec = to_pixels(reconstruction, mean, std)
    gt = to_pixels(ground_truth.to(rec.device), mean, std)  # scored where the reconstruction is
    perm, label_aware = align(rec, gt, labels_hat, labels_true)
    aligned = rec[perm]
    mse = (aligned - gt).pow(2).flatten(1).mean(-1)
    psnr = 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))
    ssim = ssim_pairs(aligned, gt)
    out = {
        "psnr": float(psnr.mean()),
        "psnr_per_image": [float(v) for v in psnr],
        "ssim": float(ssim.mean()),
        "ssim_per_image": [float(v) for v in ssim],
        "mse": float(mse.mean()),
        "ssim_perm_agnostic": permutation_agnostic_ssim(rec, gt),
        "permutation": perm,
        "label_aware": label_aware,
    }
    if label_aware:
        lh = torch.as_tensor(labels_hat).view(-1)[perm]
        out["label_matches"] = int((lh == torch.as_tensor(labels_true, device=lh.device).view(-1)).sum())
    available, note = lpips_available(lpips_weights)
    out["lpips"] = None
    out["lpips_note"] = note
    if available:
        out["lpips"] = float(np.mean(lpips_pairs(aligned, gt, lpips_weights)))
    if not all(math.isfinite(v) for v in out["psnr_per_image"]):
        raise ValueError("non-finite PSNR")
    return out
