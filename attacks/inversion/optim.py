"""Dummy-data initialisation, optimisers, learning-rate schedule and box constraints.

Initialisations (``init``), all returned in model space (normalised with mean/std):

| name | distribution | source |
|---|---|---|
| ``randn`` | N(0, 1) in model space | DLG, Inverting Gradients |
| ``uniform`` | U(0, 1) in pixel space, then normalised | Geng et al. Sec. 3.3 (their recommendation) |
| ``normal-half`` | N(1/2, 1) in pixel space | Geng et al. ablation (Fig. 3) |
| ``normal-pixel`` | N(0, 1) in pixel space | Geng et al. ablation |
| ``uniform-centered`` | U(-1/2, 1/2) in pixel space | Geng et al. ablation |
| ``grey`` | 0.5 everywhere in pixel space, tiny noise | common baseline |

Optimisers (``optimizer``): ``adam`` (optionally on the *sign* of the gradient, Inverting Gradients),
``lbfgs`` (DLG, Geng; one L-BFGS iteration per step so that steps count objective evaluations, history kept
across steps; ``line_search="strong_wolfe"`` optional), ``sgd``.
Schedule (``schedule``): ``step-decay`` multiplies the lr by 0.1 at 3/8, 5/8 and 7/8 of the steps (Inverting
Gradients), or ``none``. Box constraints (``box=True``) clamp the dummy data to [0, 1] in pixel space after
every step.
"""

from __future__ import annotations

from typing import Callable

import torch


def _pixel_to_model(p: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (p - mean) / std


def _init_randn(shape, mean, std, gen):
    return torch.randn(shape, generator=gen, dtype=mean.dtype)


def _init_uniform(shape, mean, std, gen):
    return _pixel_to_model(torch.rand(shape, generator=gen, dtype=mean.dtype), mean, std)


def _init_normal_half(shape, mean, std, gen):
    return _pixel_to_model(0.5 + torch.randn(shape, generator=gen, dtype=mean.dtype), mean, std)


def _init_normal_pixel(shape, mean, std, gen):
    return _pixel_to_model(torch.randn(shape, generator=gen, dtype=mean.dtype), mean, std)


def _init_uniform_centered(shape, mean, std, gen):
    return _pixel_to_model(torch.rand(shape, generator=gen, dtype=mean.dtype) - 0.5, mean, std)


def _init_grey(shape, mean, std, gen):
    return _pixel_to_model(0.5 + 1e-3 * torch.randn(shape, generator=gen, dtype=mean.dtype), mean, std)


INITS: dict[str, Callable] = {
    "randn": _init_randn,
    "uniform": _init_uniform,
    "normal-half": _init_normal_half,
    "normal-pixel": _init_normal_pixel,
    "uniform-centered": _init_uniform_centered,
    "grey": _init_grey,
}


def init_dummy(name: str, shape: tuple[int, ...], mean: torch.Tensor, std: torch.Tensor,
               generator: torch.Generator) -> torch.Tensor:
    """A dummy batch of ``shape`` (last three dims C, H, W) in model space; mean/std broadcast as [C, 1, 1]."""
    if name not in INITS:
        raise ValueError(f"init: {name!r} is not one of {sorted(INITS)}")
    return INITS[name](shape, mean, std, generator)


def _adam(params, lr, **kw):
    return torch.optim.Adam(params, lr=lr)


def _lbfgs(params, lr, line_search=None, history_size=100, **kw):
    return torch.optim.LBFGS(params, lr=lr, max_iter=1, history_size=history_size,
                             line_search_fn=line_search, tolerance_grad=0.0, tolerance_change=0.0)


def _sgd(params, lr, **kw):
    return torch.optim.SGD(params, lr=lr, momentum=kw.get("momentum", 0.0))


OPTIMIZERS: dict[str, Callable] = {"adam": _adam, "lbfgs": _lbfgs, "sgd": _sgd}


def make_optimizer(name: str, params, lr: float, **kw) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: {name!r} is not one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr, **kw)


def _step_decay(optimizer, steps):
    milestones = sorted({max(1, int(steps * f)) for f in (3 / 8, 5 / 8, 7 / 8)})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)


def _no_schedule(optimizer, steps):
    return None


SCHEDULES: dict[str, Callable] = {"step-decay": _step_decay, "none": _no_schedule}


def make_schedule(name: str, optimizer: torch.optim.Optimizer, steps: int):
    if name not in SCHEDULES:
        raise ValueError(f"schedule: {name!r} is not one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](optimizer, steps)


def box_bounds(mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Model-space bounds of the pixel box [0, 1], shaped like mean ([C, 1, 1])."""
    return (0.0 - mean) / std, (1.0 - mean) / std
