"""Alignment and image scores: known permutations, label-aware matching, PSNR values, SSIM on 8x8, grids."""

from __future__ import annotations

import pytest
import torch

from fedsim.evaluation.grids import save_comparison
from fedsim.core.metrics.images import align, image_metrics, permutation_agnostic_ssim, to_pixels


def _batch(k=5, shape=(3, 16, 16), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((k,) + shape, generator=gen)


def test_alignment_recovers_a_known_permutation():
    gt = _batch()
    perm = [3, 0, 4, 1, 2]
    rec = torch.empty_like(gt)
    for j, i in enumerate(perm):
        rec[i] = gt[j] + 0.01 * torch.randn_like(gt[j])
    out = image_metrics(rec, gt, mean=(0.0,), std=(1.0,))
    assert out["permutation"] == perm
    assert out["psnr"] > 35 and out["ssim"] > 0.9
    assert len(out["psnr_per_image"]) == 5


def test_label_aware_alignment_matches_within_labels_only():
    gt = _batch(4)
    # reconstruction 0 looks like gt 1 but carries the label of gt 0: label-aware matching must ignore looks
    rec = torch.stack([gt[1], gt[0], gt[2], gt[3]])
    labels_true = torch.tensor([0, 1, 2, 3])
    labels_hat = torch.tensor([0, 1, 2, 3])
    perm_free, _ = align(rec, gt)
    assert perm_free == [1, 0, 2, 3]
    perm_lab, aware = align(rec, gt, labels_hat, labels_true)
    assert aware and perm_lab == [0, 1, 2, 3]
    # with repeated labels, matching by similarity happens inside each label group
    labels_true = torch.tensor([5, 5, 2, 2])
    rec = torch.stack([gt[3], gt[2], gt[1], gt[0]])
    labels_hat = torch.tensor([2, 2, 5, 5])
    out = image_metrics(rec, gt, (0.0,), (1.0,), labels_hat=labels_hat, labels_true=labels_true)
    assert out["permutation"] == [3, 2, 1, 0] and out["label_matches"] == 4
    assert out["psnr"] > 100


def test_psnr_in_pixel_space_after_denormalisation():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    gt_pix = _batch(2)
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)
    gt = (gt_pix - m) / s
    rec_pix = (gt_pix + 0.1).clamp(0, 1)
    rec = (rec_pix - m) / s
    out = image_metrics(rec, gt, mean, std)
    mse = (rec_pix.double() - gt_pix.double()).pow(2).flatten(1).mean(-1)
    expected = (10 * torch.log10(1 / mse)).mean()
    assert out["psnr"] == pytest.approx(float(expected), abs=1e-4)
    assert torch.allclose(to_pixels(gt, mean, std), gt_pix.double(), atol=1e-6)


def test_ssim_on_8x8_images_and_identity():
    gt = _batch(3, (1, 8, 8))
    out = image_metrics(gt, gt, (0.0,), (1.0,))
    assert out["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert out["ssim_perm_agnostic"] == pytest.approx(1.0, abs=1e-5)
    noisy = image_metrics(torch.rand(3, 1, 8, 8), gt, (0.0,), (1.0,))
    assert noisy["ssim"] < 0.5


def test_permutation_agnostic_ssim_is_invariant_to_order():
    gt = _batch(4, (1, 12, 12))
    rec = (gt + 0.05 * torch.randn_like(gt)).clamp(0, 1)
    a = permutation_agnostic_ssim(rec.double(), gt.double())
    b = permutation_agnostic_ssim(rec.double()[[2, 0, 3, 1]], gt.double())
    assert a == pytest.approx(b, abs=1e-9)


def test_lpips_reported_unavailable_not_faked():
    gt = _batch(1)
    out = image_metrics(gt, gt, (0.0,), (1.0,), lpips=True)
    assert out["lpips"] is None and "unavailable" in out["lpips_note"]
    missing = image_metrics(gt, gt, (0.0,), (1.0,), lpips_weights="/nonexistent/alexnet.pth")
    assert missing["lpips"] is None and "not found" in missing["lpips_note"]


def test_lpips_from_a_local_backbone_file(tmp_path):
    """A torchvision AlexNet state dict on disk (here: random weights, standing in for the ImageNet file)
    is loaded into torchmetrics' LPIPS; identical images score 0, a perturbed batch scores more."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    path = tmp_path / "alexnet.pth"
    torch.save({f"features.{k}": v for k, v in alexnet(weights=None).features.state_dict().items()}, path)
    gt = torch.rand(2, 3, 32, 32)
    same = image_metrics(gt, gt, (0.0,), (1.0,), lpips_weights=str(path))
    noisy = image_metrics((gt + 0.3 * torch.randn_like(gt)).clamp(0, 1), gt, (0.0,), (1.0,),
                          lpips_weights=str(path))
    assert same["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert noisy["lpips"] > 1e-3 and "alexnet.pth" in noisy["lpips_note"]
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="backbone tensors missing"):
        image_metrics(gt, gt, (0.0,), (1.0,), lpips_weights=str(bad))


def test_comparison_grid_png(tmp_path):
    gt = _batch(3, (1, 8, 8))
    out = image_metrics(gt.flip(0), gt, (0.0,), (1.0,))
    path = save_comparison(gt, gt.flip(0), tmp_path / "grid.png", permutation=out["permutation"],
                           psnr_per_image=out["psnr_per_image"], title="test")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unequal_counts_are_matched_not_refused():
    """K is an estimate under DP-SGD (expected batch vs the realised Poisson draw): extra reconstructions stay
    unmatched; missing ones count as the mean image and are reported as unreconstructed."""
    from fedsim.evaluation.scoring import score
    from fedsim.core.types import GroundTruth, InversionResult

    g = torch.Generator().manual_seed(0)
    gt = torch.rand(3, 1, 8, 8, generator=g)
    extra = torch.cat([torch.rand(2, 1, 8, 8, generator=g), gt.flip(0)])  # 5 reconstructions, 3 exact
    m = image_metrics(extra, gt, (0.0,), (1.0,))
    assert m["psnr"] > 60 and sorted(m["permutation"]) == [2, 3, 4]
    truth = GroundTruth(1, 0, (gt,), (torch.tensor([0, 1, 2]),))
    res = InversionResult(0, 1, "ig", ok=True, labels=torch.tensor([2, 1]),
                          reconstruction=gt[[2, 1]].clone())  # 2 reconstructions for 3 samples
    out = score(res, truth, 3, (0.0,), (1.0,))
    assert out["unreconstructed"] == 1 and len(out["psnr_per_image"]) == 3
    assert sorted(out["psnr_per_image"])[-2] > 60 and min(out["psnr_per_image"]) < 30  # the missing one is not free
