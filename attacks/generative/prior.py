"""A small generative image prior the curious server trains on PUBLIC auxiliary data.

Public auxiliary data: a split no client holds. fedsim clients train only on partitions of the dataset's
TRAIN split, so the server may use the TEST split. By default it takes the held-out HALF of it
(``aux_part="test-half"``: the even-indexed test images); the odd-indexed half stays untouched by the attack,
so central evaluation on it (or on the whole test split, with the caveat) remains honest. ``aux_part="test"``
takes the whole test split (more data for the prior; then do not report central accuracy on it as unseen).

The prior is a VAE (latent 20) with a small DCGAN-style conv decoder (default) or an MLP decoder (``arch=``),
which trains in a few minutes on CPU for 28x28 MNIST (conv 3.2 min, MLP 1.4 min on the 2-core machine) and is more
stable than a GAN at this size. The decoder maps z ~ N(0, I)
to an image in PIXEL space [0, 1] (sigmoid output); inversion converts to the model's normalised input space.

Weights are stored with safetensors; metadata (kind, arch, latent_dim, hidden, image shape, dataset, aux split and
every training setting, :data:`TRAIN_KEYS`) goes into the file's string metadata.
``<run>/priors/<dataset>_<kind>.safetensors`` is the default location (:func:`default_prior_path`);
:func:`get_prior` reuses a file when present and, when it may retrain (public images given), only if the file was
trained with the settings asked for (:func:`stale_reasons`): a cached file from before a default changed is
retrained, not silently reused.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from fedsim.core.lists import comma_list
from fedsim.core.runfolder import RunFolder

log = logging.getLogger(__name__)

KINDS = ("vae",)
AUX_PARTS = ("test-half", "test")

TRAIN_HINT = ("train it once with fedsim.attacks.generative.train_prior(dataset=..., path=...) (e.g. "
              "`python -c \"from fedsim.attacks.generative import train_prior; train_prior(dataset='mnist_subset', "
              "path='runs/priors/mnist_subset_vae.safetensors')\"`), or pass aux_images= (public auxiliary "
              "data, e.g. fedsim.attacks.generative.aux_split(dataset)) so the attack trains and caches it")


class PriorMissing(FileNotFoundError):
    """No prior file and no auxiliary data to train one."""


ARCHS = ("mlp", "conv")
#: train_prior's decoder (docs/benchmarks/defenses.md: conv since 2026-12-03)
DEFAULT_ARCH = "conv"


class Decoder(nn.Module):
    """z [N, d] -> pixel-space image [N, C, H, W] in [0, 1].

    ``arch="mlp"``: two hidden layers (``hidden``, ``2 hidden``). ``arch="conv"``: a DCGAN-style decoder (Radford
    et al., ICLR 2016, without BatchNorm so that GIAS can tune its weights per batch): a linear map to ``hidden``
    channels at a quarter of the image size, then two stride-2 transposed convolutions (``hidden/2`` channels,
    then C), cropped to H x W; translation-equivariant, so nearby pixels share weights."""

    def __init__(self, latent_dim: int, image_shape: Sequence[int], hidden: int = 256, arch: str = "mlp") -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"prior arch {arch!r} is not one of {ARCHS}")
        self.latent_dim, self.hidden, self.arch = int(latent_dim), int(hidden), arch
        self.image_shape = tuple(int(s) for s in image_shape)
        c, h, w = self.image_shape
        if arch == "mlp":
            self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * hidden),
                                     nn.ReLU(), nn.Linear(2 * hidden, c * h * w))
        else:
            self._h0, self._w0 = math.ceil(h / 4), math.ceil(w / 4)
            half = max(hidden // 2, 1)
            self.net = nn.Sequential(nn.Linear(latent_dim, hidden * self._h0 * self._w0), nn.ReLU(),
                                     nn.Unflatten(1, (hidden, self._h0, self._w0)),
                                     nn.ConvTranspose2d(hidden, half, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(half, c, 4, 2, 1))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        c, h, w = self.image_shape
        return out.reshape(-1, c, h, w) if self.arch == "mlp" else out[..., :h, :w]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))


class Encoder(nn.Module):
    def __init__(self, latent_dim: int, image_shape: Sequence[int], hidden: int = 256, arch: str = "mlp") -> None:
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        if arch == "mlp":
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 2 * hidden), nn.ReLU(),
                                     nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))
        else:
            half = max(hidden // 2, 1)
            conv = nn.Sequential(nn.Conv2d(c, half, 4, 2, 1), nn.ReLU(), nn.Conv2d(half, hidden, 4, 2, 1), nn.ReLU(),
                                 nn.Flatten())
            with torch.no_grad():
                flat = conv(torch.zeros(1, c, h, w)).shape[1]
            self.net = nn.Sequential(conv, nn.Linear(flat, 2 * latent_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=-1)
        return mu, logvar.clamp(-10, 10)


@dataclass
class Prior:
    """A trained decoder plus what it was trained on."""

    decoder: Decoder
    kind: str
    dataset: str
    aux_part: str
    train_seconds: float = 0.0
    final_loss: float = float("nan")
    settings: dict[str, Any] = field(default_factory=dict)  # train_prior's settings (TRAIN_KEYS, seed); {} if unknown

    @property
    def latent_dim(self) -> int:
        return self.decoder.latent_dim

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.decoder.image_shape

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        ref = next(self.decoder.parameters())
        with torch.no_grad():
            return self.decoder(torch.randn(n, self.latent_dim, generator=gen, dtype=ref.dtype).to(ref.device))


def aux_split(dataset, part: str = "test-half") -> tuple[torch.Tensor, torch.Tensor]:
    """The server's public auxiliary data (pixel space [0, 1], labels): see the module docstring. ``dataset``: an
    ``ImageDataset``, the memory-mapped ``StoredDataset`` (only these test rows are read) or a dataset name."""
    from fedsim.core.data import load_dataset

    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    if part == "test-half":
        return ds.test_x[0::2].clone(), ds.test_y[0::2].clone()
    if part == "test":
        return ds.test_x.clone(), ds.test_y.clone()
    raise ValueError(f"aux_part: {part!r} is not one of {AUX_PARTS}")


def default_prior_path(root: str | Path, dataset: str, kind: str = "vae") -> Path:
    """``<root>/priors/<dataset>_<kind>.safetensors`` (root: the run folder or a cache folder)."""
    return RunFolder(root).priors / f"{dataset}_{kind}.safetensors"  # the run folder's name for it


def parse_archs(value: Any) -> tuple[str, ...]:
    """``prior_archs`` as a tuple of decoder names (a comma-separated string or a sequence), each checked."""
    archs = tuple(dict.fromkeys(comma_list(value)))
    bad = [a for a in archs if a not in ARCHS]
    if bad or not archs:
        raise ValueError(f"prior_archs: {bad or value!r} not in the decoders {ARCHS}")
    return archs


def arch_prior_path(path: str | Path, arch: str) -> Path:
    """The file of the ``arch`` decoder's prior beside ``path``: ``path`` itself for :func:`train_prior`'s default
    arch, else ``<stem>-<arch><suffix>`` (``mnist_subset_vae-mlp.safetensors``), so that one configured path names
    a prior per decoder when an attack tries several (``prior_archs``)."""
    if arch not in ARCHS:
        raise ValueError(f"prior arch {arch!r} is not one of {ARCHS}")
    path = Path(path)
    return path if arch == DEFAULT_ARCH else path.with_name(f"{path.stem}-{arch}{path.suffix}")


def shifted_copies(images: torch.Tensor, shift: int) -> torch.Tensor:
    """``images`` [N, C, H, W] and their copies translated by every (dy, dx) in [-shift, shift]^2 (zero fill):
    (2 shift + 1)^2 N images."""
    if shift <= 0:
        return images
    h, w = images.shape[-2:]
    out = [images]
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            if dy or dx:
                moved = torch.zeros_like(images)
                moved[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
                    images[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
                out.append(moved)
    return torch.cat(out)


DEFAULT_HIDDEN = {"mlp": 256, "conv": 64}
# the settings that make one trained prior differ from another (a cached file with other values is stale);
# the seed and the time limit only change which draw of the same prior you get
TRAIN_KEYS = ("kind", "arch", "latent_dim", "hidden", "steps", "batch_size", "lr", "beta", "shift_augment",
              "aux_part")


def train_settings(**options) -> dict[str, Any]:
    """:func:`train_prior`'s settings for these keyword options: its defaults filled in, ``hidden`` resolved per
    arch, restricted to :data:`TRAIN_KEYS` (what a cached prior file records and is compared on)."""
    params = inspect.signature(train_prior).parameters
    unknown = sorted(set(options) - set(params) - {"dataset", "images"})
    if unknown:
        raise ValueError(f"unknown prior training options {unknown}; valid: {sorted(TRAIN_KEYS)}")
    out = {k: options.get(k, params[k].default) for k in TRAIN_KEYS}
    if out["hidden"] is None:
        out["hidden"] = DEFAULT_HIDDEN.get(out["arch"], 256)
    return out


def train_prior(dataset: str | None = None, *, images: torch.Tensor | None = None, kind: str = "vae",
                arch: str = DEFAULT_ARCH, latent_dim: int = 20, hidden: int | None = None, steps: int = 6000,
                batch_size: int = 64, lr: float = 1e-3, beta: float = 1.0, shift_augment: int = 1, seed: int = 0,
                aux_part: str = "test-half", path: str | Path | None = None,
                max_seconds: float | None = None) -> Prior:
    """Train a VAE (Kingma & Welling, ICLR 2014) on public auxiliary images (``images`` pixel space
    [N, C, H, W], or ``dataset``'s aux split) and optionally save it (safetensors) to ``path``. Deterministic for a
    given seed (single thread). ``arch``: the decoder (:class:`Decoder`); ``hidden`` defaults per arch
    (:data:`DEFAULT_HIDDEN`).

    ``shift_augment``: also train on the images translated by up to that many pixels (standard augmentation;
    the public split is small, 500 MNIST digits). Measured on the DP frontier's model
    (``docs/benchmarks/defenses.md``): 1 pixel and 6000 steps (the earlier default: 0 and 3000) raise the
    prior's capacity (PSNR of the truth projected onto the decoder) from 18.5 to 20.3 dB and ``gias`` from 18.15
    to 18.59 dB (``python -m benchmarks.tv_weight truth``, 3 seeds), and the frontier's undefended point from 16.5 to
    18.9 dB (``configs/sweep_dp.toml``, 9 updates). ``arch="conv"`` (the default since 2026-12-03; was
    ``"mlp"``): capacity 20.3 -> 23.3 dB and ``gias`` 18.6 -> 19.3 dB on the tuning seeds 0-2, 20.3 -> 23.3 dB on
    the held-out seeds 3-5 (same benchmark, ``--prior-arch``)."""
    if kind not in KINDS:
        raise ValueError(f"prior kind {kind!r} is not one of {KINDS}")
    if arch not in ARCHS:
        raise ValueError(f"prior arch {arch!r} is not one of {ARCHS}")
    name = str(dataset) if dataset is not None else "custom"
    if images is None:
        if dataset is None:
            raise ValueError("train_prior needs dataset= or images=")
        images, _ = aux_split(dataset, aux_part)
    else:
        aux_part = "given"
    settings = train_settings(kind=kind, arch=arch, latent_dim=latent_dim, hidden=hidden, steps=steps,
                              batch_size=batch_size, lr=lr, beta=beta, shift_augment=shift_augment, aux_part=aux_part)
    hidden = settings["hidden"]
    images = shifted_copies(images.float().clamp(0, 1), int(shift_augment))
    shape = tuple(images.shape[1:])
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc, dec = Encoder(latent_dim, shape, hidden, arch), Decoder(latent_dim, shape, hidden, arch)
        opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=lr)
        gen = torch.Generator().manual_seed(seed)
        n = len(images)
        loss_v = float("nan")
        for step in range(int(steps)):
            idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
            x = images[idx]
            mu, logvar = enc(x)
            z = mu + torch.randn(mu.shape, generator=gen, dtype=mu.dtype).to(mu.device) * (0.5 * logvar).exp()
            logits = dec.logits(z)
            rec = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
            kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum() / len(x)
            loss = rec + beta * kl
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_v = float(loss.detach())
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                break
    dec.eval()
    for p in dec.parameters():
        p.requires_grad_(False)
    prior = Prior(dec, kind, name, aux_part, train_seconds=time.perf_counter() - t0, final_loss=loss_v,
                  settings={**settings, "seed": int(seed), "steps_done": step + 1 if steps else 0})
    if path is not None:
        save_prior(prior, path)
    return prior


FORMATS = ("fedsim-prior-1", "fedsim-prior-2")  # 2: adds the decoder arch and the training settings


def save_prior(prior: Prior, path: str | Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"kind": prior.kind, "arch": prior.decoder.arch, "latent_dim": str(prior.latent_dim),
            "hidden": str(prior.decoder.hidden), "image_shape": ",".join(str(s) for s in prior.image_shape),
            "dataset": prior.dataset, "aux_part": prior.aux_part, "format": FORMATS[-1],
            "train": json.dumps(prior.settings, sort_keys=True)}
    state = {k: v.detach().contiguous() for k, v in prior.decoder.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("format") not in FORMATS:
        raise ValueError(f"{path} is not a fedsim prior (metadata {meta})")
    return meta


def load_prior(path: str | Path) -> Prior:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise PriorMissing(f"generative prior file {str(path)!r} does not exist; {TRAIN_HINT}")
    meta = _metadata(path)
    shape = tuple(int(s) for s in meta["image_shape"].split(","))
    dec = Decoder(int(meta["latent_dim"]), shape, int(meta["hidden"]), meta.get("arch", "mlp"))
    dec.load_state_dict(load_file(str(path)))
    dec.eval()
    for p in dec.parameters():
        p.requires_grad_(False)
    return Prior(dec, meta["kind"], meta["dataset"], meta["aux_part"], settings=json.loads(meta.get("train", "{}")))


def stale_reasons(path: str | Path, **train_options) -> list[str]:
    """Why the prior file at ``path`` is not the one :func:`train_prior` would train with ``train_options``
    (its defaults for the rest): one ``key: file value != wanted`` per differing setting, or that the file
    predates recorded settings. Empty when the file is current. ``aux_part`` "given" (trained on images passed
    in) matches any split."""
    recorded = json.loads(_metadata(Path(path)).get("train", "null") or "null")
    if not recorded:
        return ["the file records no training settings (written before fedsim-prior-2)"]
    wanted = train_settings(**train_options)
    return [f"{k}: {recorded.get(k)!r} != {wanted[k]!r}" for k in TRAIN_KEYS
            if recorded.get(k) != wanted[k] and not (k == "aux_part" and "given" in (recorded.get(k), wanted[k]))]


def get_prior(prior_path: str | Path | None = None, *, prior: Prior | None = None,
              aux_images: torch.Tensor | None = None, dataset: str | None = None, **train_options) -> Prior:
    """A ready prior: ``prior`` if given; else the file at ``prior_path`` if it exists (and, when ``aux_images``
    allow retraining, was trained with these settings: a stale file is retrained and replaced, with a logged
    reason); else one trained on ``aux_images`` (public data) and saved to ``prior_path``; else
    :class:`PriorMissing` saying how to train it. Without ``aux_images`` an existing file is used as it is (the
    user's own prior)."""
    if prior is not None:
        return prior
    if prior_path is not None and Path(prior_path).exists():
        reasons = stale_reasons(prior_path, **{k: v for k, v in train_options.items() if k != "seed"}) \
            if aux_images is not None else []
        if not reasons:
            return load_prior(prior_path)
        log.warning("prior %s is stale (%s); retraining it on the public aux images", prior_path, "; ".join(reasons))
    if aux_images is not None:
        return train_prior(dataset, images=aux_images, path=prior_path, **train_options)
    where = f"file {str(prior_path)!r} does not exist" if prior_path else "no prior_path= was given"
    raise PriorMissing(f"generative inversion needs a trained prior: {where} and no aux_images= were given; "
                       f"{TRAIN_HINT}")
