"""Gradient inversion through a generative prior: GGL-style (optimise the latent code z) and GIAS-style
(optimise z, then the generator's weights too).

* ``ggl``: Li et al., "Auditing Privacy Defenses in FL via Generative Gradient Leakage" (CVPR 2022) search
  the latent space of a pretrained GAN (CMA-ES / BO there; Adam on z with restarts here) to match the
  gradient; the image is always on the generator's manifold.
* ``gias``: Jeon et al., "Gradient Inversion with Generative Image Prior" (NeurIPS 2021): latent search
  first, then the generator's parameters are optimised too (per batch here, not per image), which lets the
  image leave the manifold where the gradient asks for it.

Labels are given (e.g. restored by iLRG) and assigned by count; the distance is one of
``attacks.inversion.objectives.DISTANCES`` (cosine default). Output: [K, C, H, W] in model space.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Sequence

import torch
from torch.func import functional_call

from attacks.generative.prior import get_prior
from attacks.inversion import fedavg as _fedavg
from attacks.inversion import labels as _labels
from attacks.inversion import objectives as _objectives
from attacks.inversion.core import InversionResult

OPTIONS = {
    "prior_path": "safetensors file of the prior (attacks.generative.train_prior); reused when present",
    "prior": "an attacks.generative.Prior object (overrides prior_path)",
    "aux_images": "public auxiliary images (pixel space) to train the prior when the file is missing",
    "latent_dim": "latent size when the prior is trained here (default 20)",
    "prior_steps": "VAE training steps when the prior is trained here (default 3000)",
    "distance": "gradient distance (attacks.inversion.objectives.DISTANCES), default cosine",
    "layer_weights": "per-layer weights of the distance",
    "attack_lr": "Adam step size on z (default 0.1)",
    "latent_weight": "weight of the N(0, I) latent penalty mean(z^2) (default 1e-3)",
    "tv": "total variation weight on the generated image (default 0)",
    "restarts": "independent z initialisations optimised jointly; the best is kept (default 4)",
    "gias_fraction": "gias: fraction of steps spent on the generator weights after the z search (default 0.5)",
    "gias_lr": "gias: Adam step size on the generator weights (default 1e-4)",
    "return_result": "return an InversionResult",
    # accepted for invert()/pipeline compatibility, ignored
    "batch_size": "ignored (the batch size is len(labels))",
    "lr": "ignored (FedSGD gradients; FedAvg fake gradients are matched like one gradient)",
    "local_steps": "ignored",
    "local_batch_size": "ignored",
}


def _tv(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def invert_generative(mode: str, *, model, gradients=None, labels=None, input_shape: Sequence[int],
                      steps: int = 300, mean=(0.0,), std=(1.0,), seed: int = 0, **options: Any):
    """Run GGL (``mode="ggl"``) or GIAS (``mode="gias"``); see the module docstring and :data:`OPTIONS`."""
    if mode not in ("ggl", "gias"):
        raise ValueError(f"mode must be 'ggl' or 'gias', got {mode!r}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"{mode}: unknown options {unknown}; valid options: {sorted(OPTIONS)}")
    if labels is None:
        raise ValueError(f"{mode} needs labels=... (e.g. attacks.labels.restore_labels('ilrg', ...).labels)")
    if gradients is None:
        raise ValueError(f"{mode} needs gradients=... (a FedSGD gradient or a FedAvg fake gradient)")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    prior = get_prior(options.get("prior_path"), prior=options.get("prior"), aux_images=options.get("aux_images"),
                      latent_dim=int(options.get("latent_dim", 20)), steps=int(options.get("prior_steps", 3000)),
                      seed=seed)
    input_shape = tuple(int(s) for s in input_shape)
    if tuple(prior.image_shape) != input_shape:
        raise ValueError(f"prior generates {prior.image_shape} images but the model takes {input_shape}")
    t_start = time.perf_counter()
    model = copy.deepcopy(model).train()
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    target = [g.detach().float() for g in _fedavg.as_param_list(model, gradients, "gradients")]
    hard = _labels.as_label_list(labels, sort=True)
    k = len(hard)
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    distance = _objectives.get_distance(options.get("distance", "cosine"))
    weights = _objectives.layer_weights(options.get("layer_weights"), len(names))
    r = int(options.get("restarts", 4))
    lat_w = float(options.get("latent_weight", 1e-3))
    tv_w = float(options.get("tv", 0.0))

    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(r, k, prior.latent_dim, generator=gen).requires_grad_(True)
    decoder = copy.deepcopy(prior.decoder)
    dec_params = {n: p.detach().clone() for n, p in decoder.named_parameters()}

    def match(pixels: torch.Tensor) -> torch.Tensor:
        xr = (pixels - mean_t) / std_t
        logits = functional_call(model, {**params, **buffers}, (xr,))
        loss = _fedavg.step_loss(logits, hard)
        dummy = torch.autograd.grad(loss, [params[n] for n in names], create_graph=True)
        return distance(list(dummy), target, weights)

    scale: dict[str, torch.Tensor] = {}

    def objective(dp):
        pix = functional_call(decoder, dp, (z.view(r * k, -1),)).view(r, k, *input_shape)
        per = torch.stack([match(pix[g]) for g in range(r)])
        # the matching loss is divided by its value at the initial z (like the engine's normalize_match): on
        # untrained models 1 - cos is ~1e-5 everywhere and would drown under the latent / TV penalties
        if "0" not in scale:
            scale["0"] = per.detach().mean().clamp_min(1e-30)
        total = per / scale["0"] + lat_w * z.pow(2).mean(dim=(1, 2))
        if tv_w:
            total = total + tv_w * torch.stack([_tv(pix[g]) for g in range(r)])
        return total, per, pix

    gias_steps = int(round(steps * float(options.get("gias_fraction", 0.5)))) if mode == "gias" else 0
    z_steps = max(1, steps - gias_steps)
    history: list[tuple[int, float]] = []
    opt = torch.optim.Adam([z], lr=float(options.get("attack_lr", 0.1)))
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(z_steps * f) for f in (0.5, 0.75)], gamma=0.3)
    best = [math.inf] * r
    best_pix = None
    for step in range(z_steps):
        total, per, pix = objective(dec_params)
        opt.zero_grad()
        total.sum().backward()
        opt.step()
        sched.step()
        for g in range(r):
            v = float(per[g].detach())
            if math.isfinite(v) and v < best[g]:
                best[g] = v
        if step % 10 == 0:
            history.append((step, float(per.detach().min())))
    _, per, pix = objective(dec_params)
    g_best = int(per.detach().argmin())
    best_loss = float(per[g_best].detach())
    best_pix = pix[g_best].detach().clone()

    if gias_steps:
        # keep the best restart's z, free the generator weights (GIAS stage 2)
        z = z.detach()[g_best:g_best + 1].clone().requires_grad_(True)
        r_saved, r = r, 1
        dp = {n: p.clone().requires_grad_(True) for n, p in dec_params.items()}
        opt2 = torch.optim.Adam([{"params": list(dp.values()), "lr": float(options.get("gias_lr", 1e-4))},
                                 {"params": [z], "lr": 0.1 * float(options.get("attack_lr", 0.1))}])
        for step in range(gias_steps):
            total, per, pix = objective(dp)
            v = float(per[0].detach())
            if math.isfinite(v) and v < best_loss:
                best_loss, best_pix = v, pix[0].detach().clone()
            opt2.zero_grad()
            total.sum().backward()
            opt2.step()
            if step % 10 == 0:
                history.append((z_steps + step, v))
        _, per, pix = objective(dp)
        if float(per[0].detach()) < best_loss:
            best_loss, best_pix = float(per[0].detach()), pix[0].detach().clone()
        r = r_saved

    out = ((best_pix - mean_t) / std_t).detach()
    seconds = time.perf_counter() - t_start
    result = InversionResult(method=mode, inputs=out, labels=hard.clone(), best_loss=best_loss, history=history,
                             steps=steps, seconds=seconds, seconds_per_step=seconds / steps,
                             options={k_: v for k_, v in options.items()
                                      if k_ not in ("prior", "aux_images", "return_result")})
    return result if options.get("return_result") else out


def invert_ggl(**kwargs):
    return invert_generative("ggl", **kwargs)


def invert_gias(**kwargs):
    return invert_generative("gias", **kwargs)
