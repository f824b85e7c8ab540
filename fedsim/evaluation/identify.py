"""Identifiability of a reconstruction: could a person tell whose image, and which class, it is?

PSNR says how close a reconstruction is in pixels; it does not say whether it gives a person away. Two measures,
each with its chance level, on the reconstructions after the optimal label-aware alignment of
``fedsim.evaluation.scoring`` (reconstruction ``rec[perm[j]]`` stands for true image ``j``):

* **class** (``ident_class_acc``): a small CNN trained on the server's PUBLIC split only
  (``fedsim.attacks.generative.aux_split``: the even-indexed test images, never a client's data) names the true
  class of the source image. Chance (``ident_class_chance``): the share of the batch in its most frequent class,
  what the best constant guess scores on this batch (the honest chance for a skewed, non-IID batch; it is at least
  1 / num_classes).
* **re-identification** (``ident_reid_acc``): the reconstruction's nearest neighbour (L2, pixel space [0, 1]
  after un-normalisation) among the client's pool (its whole local partition, capped at ``MAX_POOL`` images, the
  true batch always in it) is its own source image. Chance (``ident_reid_chance``): 1 / pool size.

The classifier is trained once per (dataset, image shape) and cached as safetensors (never pickle) under
``cache_dir`` (``classifier_path``); training is capped (``MAX_TRAIN``, ``EPOCHS``) so it takes seconds on a CPU.
Both follow the evaluation of model-inversion attacks in Zhang et al., "The Secret Revealer" (CVPR 2020): the
accuracy of a separate evaluation classifier on the reconstructions, and the nearest private image in a feature
(here: pixel) space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from fedsim.core.metrics.images import to_pixels

MAX_POOL = 2000  # client images the re-identification searches (the true batch always among them)
MAX_TRAIN = 5000  # public images the classifier trains on
STEPS = 250  # Adam steps of batch BATCH (seconds on a CPU core for 28 x 28 images)
BATCH = 64
CLASS_CHANCE_RULE = "majority-class share of the batch"
POOL_CLIENT = "client's local partition"
POOL_FALLBACK = "true batch + public split (the client's partition was not available)"


class PublicClassifier(nn.Module):
    """Two conv blocks and a linear head, on pixel-space images [N, C, H, W] in [0, 1]."""

    def __init__(self, channels: int, num_classes: int, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.head = nn.Linear(2 * width * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def classifier_path(cache_dir: str | Path, dataset: str, shape: Sequence[int], num_classes: int) -> Path:
    """``<cache>/identify/<dataset>_<C>x<H>x<W>_<classes>.safetensors``."""
    c, h, w = (int(v) for v in shape)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(dataset))
    return Path(cache_dir) / "identify" / f"{safe}_{c}x{h}x{w}_{int(num_classes)}.safetensors"


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int = 0,
                     steps: int = STEPS, max_samples: int = MAX_TRAIN) -> PublicClassifier:
    """Train :class:`PublicClassifier` on pixel-space ``images`` (Adam, ``steps`` batches drawn from passes over
    at most ``max_samples``); deterministic for a seed, leaves the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x, y = images[:max_samples].float().cpu(), labels[:max_samples].long().cpu()
        model = PublicClassifier(int(x.shape[1]), int(num_classes))
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        done = 0
        while done < steps:
            order = torch.randperm(len(x))
            for i in range(0, len(x), BATCH):
                idx = order[i:i + BATCH]
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
                done += 1
                if done >= steps:
                    break
    return model.eval()


def public_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, path: str | Path,
                      seed: int = 0, steps: int = STEPS) -> PublicClassifier:
    """The cached classifier at ``path`` (safetensors), trained from the public ``images`` when missing."""
    from safetensors.torch import load_file, save_file

    path = Path(path)
    model = PublicClassifier(int(images.shape[1]), int(num_classes))
    if path.is_file():
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    model = train_classifier(images, labels, num_classes, seed=seed, steps=steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{id(model)}.tmp")  # atomic: parallel workers may train at once
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)
    return model


@dataclass(frozen=True)
class Identify:
    """What identifiability is scored with: the public classifier and the pool (pixel space) to re-identify in.
    ``pool`` may hold the true batch or not: :func:`reid_pool` puts it first either way."""

    classifier: nn.Module | None
    pool: torch.Tensor | None
    pool_source: str = POOL_CLIENT


def predict(classifier: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Class predictions of pixel-space images (run on the classifier's device, answered on the images' device)."""
    p = next(classifier.parameters())
    with torch.no_grad():
        return classifier(pixels.to(p.device, p.dtype)).argmax(1).to(pixels.device)


def class_identifiability(classifier: nn.Module, aligned: torch.Tensor, y_true: torch.Tensor
                          ) -> tuple[float, float]:
    """(share of aligned pixel-space reconstructions classified as their source's label, majority-class share
    of the batch)."""
    y = torch.as_tensor(y_true, device=aligned.device).view(-1).long()
    acc = float((predict(classifier, aligned) == y).float().mean())
    return acc, float(torch.bincount(y).max()) / len(y)


def reid_pool(x_true: torch.Tensor, pool: torch.Tensor, cap: int = MAX_POOL, seed: int = 0) -> torch.Tensor:
    """The true batch (pixel space) first, then up to ``cap - K`` other images of ``pool`` (those equal to a
    true image left out; a seeded subsample when more), all on ``x_true``'s device in float64."""
    x_true = x_true.detach().double().flatten(1)
    pool = pool.detach().to(x_true.device, torch.float64).flatten(1)
    if len(pool):
        near = torch.cdist(pool, x_true).min(1).values
        pool = pool[near > 1e-3]  # a copy of a true image (float round-off aside) is that image
    room = max(0, cap - len(x_true))
    if len(pool) > room:
        g = torch.Generator().manual_seed(seed)  # a CPU draw: the same subsample on every device
        pool = pool[torch.randperm(len(pool), generator=g).to(pool.device)[:room]]
    return torch.cat([x_true, pool])


def reidentification(aligned: torch.Tensor, x_true: torch.Tensor, pool: torch.Tensor, cap: int = MAX_POOL,
                     seed: int = 0) -> tuple[float, float, int]:
    """(share of aligned reconstructions whose nearest pool image is their own source, 1 / pool size, pool
    size); every tensor pixel space, reconstruction ``j`` aligned to true image ``j``."""
    candidates = reid_pool(x_true.to(aligned.device), pool, cap, seed)
    nearest = torch.cdist(aligned.detach().double().flatten(1), candidates).argmin(1)
    hits = nearest == torch.arange(len(aligned), device=nearest.device)
    return float(hits.float().mean()), 1.0 / len(candidates), len(candidates)


def identify_scores(reconstruction: torch.Tensor, permutation: Sequence[int], x_true: torch.Tensor,
                    y_true: torch.Tensor, mean, std, ident: Identify, seed: int = 0) -> dict[str, Any]:
    """The ``ident_*`` scores of one reconstruction (model space, padded to at least the true batch) aligned by
    ``permutation`` (``rec[permutation[j]]`` stands for true image ``j``)."""
    aligned = to_pixels(reconstruction[list(permutation)], mean, std)
    truth = to_pixels(x_true.to(aligned.device), mean, std)  # scored where the reconstruction is
    out: dict[str, Any] = {}
    if ident.classifier is not None:
        out["ident_class_acc"], out["ident_class_chance"] = class_identifiability(ident.classifier, aligned, y_true)
    if ident.pool is not None:
        out["ident_reid_acc"], out["ident_reid_chance"], _ = reidentification(aligned, truth, ident.pool,
                                                                              seed=seed)
    return out


def identify_for(cfg, update, run_dir: str | Path, cache_dir: str | Path | None = None) -> Identify:
    """The :class:`Identify` of one update of a run: the public classifier (cached under ``cache_dir``, default
    ``<run folder's parent>/.fedsim-cache``) and the pool of the client (every cohort member's partition under
    secure aggregation), pixel space; without a partition (a client id outside the run's partitions) the
    public split is the pool, and ``pool_source`` says so."""
    from fedsim.attacks.generative import aux_split
    from fedsim.core.experiment import client_data, dataset

    ds = dataset(cfg)
    public_x, public_y = aux_split(ds)
    cache = Path(cache_dir) if cache_dir is not None else Path(run_dir).resolve().parent / ".fedsim-cache"
    path = classifier_path(cache, cfg.data.dataset, ds.input_shape, ds.num_classes)
    classifier = public_classifier(public_x, public_y, ds.num_classes, path, seed=0)
    members = [int(c) for c in (update.cohort or [update.client_id])]
    n = int(cfg.run.num_clients)
    if all(0 <= c < n for c in members):
        pool = torch.cat([_capped(client_data(cfg, c, n)[0]) for c in members])
        return Identify(classifier, to_pixels(_capped(pool), ds.mean, ds.std), POOL_CLIENT)
    return Identify(classifier, public_x, POOL_FALLBACK)


def _capped(x: torch.Tensor, cap: int = MAX_POOL, seed: int = 0) -> torch.Tensor:
    """At most ``cap`` of ``x`` (a seeded subsample), so that a large partition costs no more than a small one."""
    if len(x) <= cap:
        return x
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:cap]]
