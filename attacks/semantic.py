"""Semantic label recovery (Malcewicz et al., "Semantic Label Reconstruction", slides; CLIP there).

Offline there is no CLIP: the server trains a small ConvNet classifier on its PUBLIC auxiliary data (the
dataset's held-out test half, ``fedsim.attacks.generative.aux_split``) and uses it to label reconstructions.

* :func:`train_classifier` / :func:`classify`: pixel-space classifier and its probabilities.
* :func:`assign_by_counts`: combine with analytic label counts (e.g. iLRG): the count-restored multiset is
  assigned to the reconstructed images by maximising the classifier's log-probabilities
  (``scipy.optimize.linear_sum_assignment`` over count-expanded class slots). Gives per-image labels that the
  counts alone cannot (counts say "which labels", the classifier says "which image has which").
* :func:`semantic_labels`: the whole step on a reconstruction (model space in, labels out).
* :func:`candidate_labelings` + :func:`classifier_guided_inversion`: the slides' "classifier (CLIP) guided
  reconstruction": invert with each candidate labeling, keep the one with the lowest gradient-matching loss.

Not registered in ``LABEL_METHODS``: ``restore_labels(model, gradients, num_samples)`` has no
reconstruction to look at. These are functions used by ``benchmarks/priors.py``.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Sequence

import numpy as np
import torch
from torch import nn


class SmallConvNet(nn.Module):
    def __init__(self, in_ch: int, num_classes: int, size: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_ch, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Linear(32 * (size // 4) ** 2, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_classifier(aux_x: torch.Tensor, aux_y: torch.Tensor, num_classes: int = 10, *, epochs: int = 15,
                     batch_size: int = 64, lr: float = 2e-3, seed: int = 0, shifts: int = 2,
                     max_seconds: float | None = 60.0) -> nn.Module:
    """A small ConvNet on public aux images (pixel space [0, 1]); random +-shifts pixel translations."""
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = SmallConvNet(aux_x.shape[1], num_classes, aux_x.shape[-1])
        opt = torch.optim.Adam(clf.parameters(), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        n = len(aux_x)
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                x = aux_x[idx]
                if shifts:
                    dx, dy = (int(v) for v in torch.randint(-shifts, shifts + 1, (2,), generator=gen))
                    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
                loss = nn.functional.cross_entropy(clf(x), aux_y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                break
    return clf.eval()


def classify(classifier: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Class probabilities [N, C] of pixel-space images."""
    ref = next(classifier.parameters())
    with torch.no_grad():
        return torch.softmax(classifier(pixels.to(ref).clamp(0, 1)), dim=-1)


def assign_by_counts(probs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per-image labels [N] with exactly ``counts[c]`` images of class c (sum(counts) == N), maximising the sum
    of log-probabilities (Hungarian assignment over count-expanded class slots)."""
    from scipy.optimize import linear_sum_assignment

    probs = probs.detach()
    counts = torch.as_tensor(counts, device=probs.device).long().clamp_min(0)
    n = probs.shape[0]
    if int(counts.sum()) != n:
        raise ValueError(f"counts sum to {int(counts.sum())} but there are {n} images")
    slots = torch.repeat_interleave(torch.arange(len(counts), device=probs.device), counts)
    cost = -torch.log(probs.double().clamp_min(1e-12))[:, slots].cpu().numpy()  # the host crossing for scipy
    rows, cols = linear_sum_assignment(cost)
    out = torch.empty(n, dtype=torch.long, device=probs.device)
    out[torch.as_tensor(rows, device=probs.device)] = slots[torch.as_tensor(cols, device=probs.device)]
    return out


def semantic_labels(reconstruction: torch.Tensor, classifier: nn.Module, *, mean=(0.0,), std=(1.0,),
                    counts: torch.Tensor | None = None) -> dict:
    """Label a reconstruction (model space [N, C, H, W]): ``labels`` (classifier argmax, or count-constrained
    assignment when ``counts`` are given), ``argmax``, ``probs``."""
    rec = reconstruction.detach()
    mean_t = torch.as_tensor(mean, dtype=rec.dtype, device=rec.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=rec.dtype, device=rec.device).view(-1, 1, 1)
    probs = classify(classifier, rec * std_t + mean_t).cpu()
    argmax = probs.argmax(-1)
    labels = assign_by_counts(probs, counts) if counts is not None else argmax
    return {"labels": labels, "argmax": argmax, "probs": probs}


def candidate_labelings(probs: torch.Tensor, counts: torch.Tensor | None = None, top: int = 2,
                        max_candidates: int = 8) -> list[torch.Tensor]:
    """Candidate label multisets (sorted LongTensors) for guided inversion: the count-restored multiset (if
    given), the classifier's argmax multiset, then single-image swaps to each image's next-best classes,
    most probable first. Deduplicated; at most ``max_candidates``."""
    cands: list[torch.Tensor] = []
    if counts is not None:
        counts = torch.as_tensor(counts, device=probs.device).long()
        cands.append(torch.repeat_interleave(torch.arange(len(counts), device=probs.device), counts))
    base = probs.argmax(-1)
    cands.append(base.sort().values)
    order = probs.argsort(-1, descending=True)[:, 1:top]
    swaps = []
    for i, j in itertools.product(range(probs.shape[0]), range(order.shape[1])):
        alt = base.clone()
        alt[i] = order[i, j]
        swaps.append((float(probs[i, order[i, j]]), alt.sort().values))
    cands += [c for _, c in sorted(swaps, key=lambda t: -t[0])]
    unique: list[torch.Tensor] = []
    for c in cands:
        if not any(torch.equal(c, u) for u in unique):
            unique.append(c)
    return unique[:max_candidates]


def classifier_guided_inversion(method: str, candidates: Sequence[torch.Tensor], **invert_kwargs) -> dict:
    """Invert once per candidate labeling; keep the lowest final gradient-matching loss (slides 004)."""
    from fedsim.attacks.inversion import invert

    best = None
    losses = []
    for cand in candidates:
        res = invert(method, labels=cand, return_result=True, **invert_kwargs)
        loss = float(res.best_loss)
        losses.append(loss if math.isfinite(loss) else float("inf"))
        if best is None or losses[-1] < best[0]:
            best = (losses[-1], cand, res)
    assert best is not None, "no candidates"
    return {"labels": best[1], "result": best[2], "losses": losses, "index": int(np.argmin(losses))}


__all__ = ["SmallConvNet", "assign_by_counts", "candidate_labelings", "classifier_guided_inversion", "classify",
           "semantic_labels", "train_classifier"]
