"""Local training with the training-time defenses: the two training hooks of ``[defense]``.

``[defense.dp_sgd]`` replaces plain SGD by Opacus DP-SGD (``fedsim.core.dp_sgd``); ``[defense.training]`` changes the
loss (label smoothing, mixup; ``fedsim.core.defenses``). Everything that acts on the update after training is a
ClientApp mod (``fedsim.clients.mods``). With every defense off this is ``fedsim.core.training.train_locally``, bit for bit.
"""

from __future__ import annotations

import torch

from fedsim.core.defense_config import DefenseSection, TrainingDefense
from fedsim.core.defense_registry import in_force
from fedsim.core.defenses import mixup_step_loss, smoothed_step_loss
from fedsim.core.dp_sgd import dp_sgd_train
from fedsim.core.training import LocalResult, train_locally


def step_loss_for(t: TrainingDefense, seed: int):
    """Label smoothing / mixup loss for local training, or None (plain cross-entropy, bit-identical)."""
    if t.mixup_alpha > 0:
        return mixup_step_loss(t.mixup_alpha, seed, t.label_smoothing)
    if t.label_smoothing > 0:
        return smoothed_step_loss(t.label_smoothing)
    return None


def train_defended(d: DefenseSection, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, **kw
                   ) -> tuple[LocalResult, dict]:
    """Train ``model`` in place with the configured training hooks: (result, privacy metrics)."""
    forced = in_force(d)  # each defense says whether it is on (fedsim.core.defense_registry)
    step_loss = step_loss_for(forced["training"], kw["seed"]) if "training" in forced else None
    if "dp_sgd" in forced:
        p = forced["dp_sgd"]
        return dp_sgd_train(model, x, y, noise=p.noise_multiplier, max_grad_norm=p.max_grad_norm, delta=p.delta,
                            step_loss=step_loss, **kw)
    return train_locally(model, x, y, step_loss=step_loss, **kw), {}
