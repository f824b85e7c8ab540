"""Learned end-to-end gradient inversion (Wu et al., "Learning to Invert: Simple Adaptive Attacks for
Gradient Inversion in Federated Learning", 2022-style), CPU-sized.

For ONE fixed model (the weights of one round) the server generates (gradient, image) pairs on public
auxiliary data (batch 1), reduces each gradient to a feature vector (:func:`gradient_features`: the
classifier layer's input recovered as dW[c] / db[c], plus optionally a fixed random projection of all other
layers' gradients: a stand-in for Wu et al.'s feature hashing) and fits a decoder feature -> image: ``decoder="ridge"`` (default: closed-form ridge regression on
standardised features; deterministic, seconds on CPU) or ``"mlp"`` (Wu et al.'s 3-layer MLP, Adam; at our
CPU budget of a few hundred steps it under-fits and mostly predicts the mean digit).

It works for gradients of the weights it was trained on and breaks when the weights move (a later round):
the mapping gradient -> image is a property of the weights. It is therefore NOT registered in
``INVERSION_METHODS`` (a decoder is tied to one weight vector, not to the ``invert()`` call's model, and a
live server would have to retrain it every round); use :func:`train_inverter` + :func:`learned_invert`, as
``benchmarks/priors.py`` does. Batch size 1 only.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap


def weights_fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def gradient_features(gradients: Sequence[torch.Tensor], proj_dim: int = 0, seed: int = 0) -> torch.Tensor:
    """Feature vector(s) of batch-1 gradient(s): the classifier input h = dW[c] / db[c] read off the last two
    tensors (classifier weight, bias) at the most negative bias entry c, plus optionally a fixed random
    projection (``proj_dim`` > 0, unit norm x sqrt(dim)) of the other layers' gradients. Accepts per-sample
    stacks [N, ...]. (Flattening the raw classifier gradient instead left the decoder at the mean digit.)"""
    grads = list(gradients)
    batched = grads[-1].dim() == 2  # classifier bias is [C]; [N, C] when stacked
    if not batched:
        grads = [g.unsqueeze(0) for g in grads]
    n = grads[-1].shape[0]
    gw, gb = grads[-2].reshape(n, grads[-2].shape[1], -1).float(), grads[-1].reshape(n, -1).float()
    # batch 1: row c of dW is (p_c - y_c) h with h the classifier's input; dW[c] / db[c] at the most negative
    # bias entry (the true label's row) recovers h itself, independent of the softmax factor
    row = gb.argmin(dim=1)
    idx = torch.arange(n, device=gb.device)
    h = gw[idx, row] / gb[idx, row, None].clamp(max=-1e-12)
    parts = [h.reshape(n, -1)]
    if proj_dim:
        rest = torch.cat([g.reshape(n, -1) for g in grads[:-2]], dim=1).float()
        gen = torch.Generator().manual_seed(seed)
        proj = torch.randn(rest.shape[1], proj_dim, generator=gen).to(rest.device) / math.sqrt(proj_dim)
        pr = rest @ proj
        parts.append(pr / pr.norm(dim=1, keepdim=True).clamp_min(1e-12) * math.sqrt(proj_dim))
    out = torch.cat(parts, dim=1)
    return out if batched else out[0]


def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 256) -> list[torch.Tensor]:
    """Batch-1 gradients of every (x_i, y_i) (stacked per parameter), via torch.func.vmap."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss(p, xi, yi):
        return nn.functional.cross_entropy(functional_call(model, {**p, **buffers}, (xi[None],)), yi[None])

    g = vmap(grad(loss), in_dims=(None, 0, 0))
    outs = [g(params, x[i:i + chunk], y[i:i + chunk]) for i in range(0, len(x), chunk)]
    return [torch.cat([o[n] for o in outs]) for n in params]


class _Clamp(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.inner(f).clamp(0, 1)


@dataclass
class LearnedInverter:
    decoder: nn.Module
    image_shape: tuple[int, ...]
    proj_dim: int
    fingerprint: str
    feat_mean: torch.Tensor
    feat_std: torch.Tensor
    train_seconds: float
    final_loss: float


def train_inverter(model: nn.Module, aux_x: torch.Tensor, aux_y: torch.Tensor, *, mean=(0.0,), std=(1.0,),
                   hidden: int = 512, proj_dim: int = 0, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3,
                   shifts: int = 2, seed: int = 0, decoder: str = "ridge", ridge: float = 10.0, max_seconds: float | None = None) -> LearnedInverter:
    """Train a decoder gradient-features -> pixel image for this model's weights.

    ``aux_x`` pixel space [N, C, H, W] (public data), ``aux_y`` labels; ``shifts`` > 0 adds copies shifted by
    up to +-shifts pixels (data augmentation: more pairs from little aux data)."""
    t0 = time.perf_counter()
    model = copy.deepcopy(model).train()
    xs, ys = [aux_x], [aux_y]
    gen = torch.Generator().manual_seed(seed)
    for _ in range(max(0, shifts)):
        dx, dy = (int(v) for v in torch.randint(-shifts, shifts + 1, (2,), generator=gen))
        xs.append(torch.roll(aux_x, shifts=(dy, dx), dims=(2, 3)))
        ys.append(aux_y)
    ref = next(model.parameters())
    px = torch.cat(xs).to(device=ref.device, dtype=torch.float32)
    py = torch.cat(ys).to(ref.device)
    mean_t = torch.as_tensor(mean, dtype=px.dtype, device=px.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=px.dtype, device=px.device).view(-1, 1, 1)
    feats = gradient_features(per_sample_gradients(model, (px - mean_t) / std_t, py), proj_dim, seed)
    # standardise every feature on the training pairs: on an untrained model the activations differ little
    # between images (sigmoid ~ 0.5), so the informative part is a small deviation from a common vector
    f_mean, f_std = feats.mean(0), feats.std(0).clamp_min(1e-6)
    feats = (feats - f_mean) / f_std
    shape = tuple(px.shape[1:])
    if decoder == "ridge":
        # closed-form linear decoder (dual form when pairs < features); output clamped to [0, 1]
        n = len(feats)
        xf = torch.cat([feats, feats.new_ones(n, 1)], 1).double()
        yf = px.view(n, -1).double()
        if n < xf.shape[1]:
            w = xf.T @ torch.linalg.solve(xf @ xf.T + ridge * torch.eye(n, dtype=torch.float64, device=xf.device), yf)
        else:
            w = torch.linalg.solve(xf.T @ xf + ridge * torch.eye(xf.shape[1], dtype=torch.float64, device=xf.device), xf.T @ yf)
        lin = nn.Linear(feats.shape[1], yf.shape[1], device=xf.device)
        with torch.no_grad():
            lin.weight.copy_(w[:-1].T.float())
            lin.bias.copy_(w[-1].float())
        loss_v = float(((xf @ w).clamp(0, 1) - yf).pow(2).mean())
        return LearnedInverter(_Clamp(lin), shape, proj_dim, weights_fingerprint(model), f_mean, f_std,
                               time.perf_counter() - t0, loss_v)
    if decoder != "mlp":
        raise ValueError(f"decoder must be 'ridge' or 'mlp', got {decoder!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dec = nn.Sequential(nn.Linear(feats.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                            nn.Linear(hidden, math.prod(shape)), nn.Sigmoid()).to(feats.device)
        opt = torch.optim.Adam(dec.parameters(), lr=lr)
        n = len(feats)
        loss_v = float("nan")
        target = px.view(n, -1)
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen).to(feats.device)
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                loss = nn.functional.mse_loss(dec(feats[idx]), target[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss_v = float(loss.detach())
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                break
    dec.eval()
    return LearnedInverter(dec, shape, proj_dim, weights_fingerprint(model), f_mean, f_std, time.perf_counter() - t0, loss_v)


def learned_invert(inverter: LearnedInverter, gradients: Sequence[torch.Tensor], *, mean=(0.0,), std=(1.0,),
                   model: nn.Module | None = None, seed: int = 0) -> torch.Tensor:
    """Reconstruct the single image [1, C, H, W] (model space) behind a batch-1 gradient. If ``model`` is given
    and its weights differ from the training weights, the result is still returned (that is the point of the
    benchmark's 'later round' row), but expect garbage."""
    device = inverter.feat_mean.device
    with torch.no_grad():
        f = gradient_features([g.detach().to(device) for g in gradients], inverter.proj_dim, seed)
        f = (f - inverter.feat_mean) / inverter.feat_std
        pix = inverter.decoder(f[None]).view(1, *inverter.image_shape)
    mean_t = torch.as_tensor(mean, dtype=pix.dtype, device=device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=pix.dtype, device=device).view(-1, 1, 1)
    out = (pix - mean_t) / std_t
    return out.to(gradients[0].device)


def stale(inverter: LearnedInverter, model: nn.Module) -> bool:
    """True when ``model``'s weights are not the ones the inverter was trained for."""
    return weights_fingerprint(model) != inverter.fingerprint


__all__ = ["LearnedInverter", "gradient_features", "learned_invert", "per_sample_gradients", "stale",
           "train_inverter", "weights_fingerprint"]
