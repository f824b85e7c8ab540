"""``[defense.training]``: the loss of local training, a training hook: label smoothing (Szegedy et al., CVPR 2016)
and mixup (Zhang et al., ICLR 2018), each batch mixed with a seeded permutation of itself. The hook sets the loss
and calls the training inside it (plain SGD, or DP-SGD's optimiser: ``fedsim.core.defense.dp_sgd``).

torch is imported inside the functions: loading a config reads this module's schema and object without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedsim.core.defense.base import TRAINING_HOOK, Applier, Defense, Train, opt

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class TrainingDefense:
    """``[defense.training]``: losses of local training (a training hook)."""

    label_smoothing: float = opt(0.0, minimum=0.0, maximum=1.0, doc="label smoothing in local training")
    mixup_alpha: float = opt(0.0, minimum=0.0, doc="mixup Beta(alpha, alpha) in local training (0 = off)")


class TrainingLossDefense(Defense):
    """``[defense.training]``: label smoothing / mixup loss, a training hook (outermost: it chooses the loss)."""

    table, schema = "training", TrainingDefense

    def on(self, t: TrainingDefense) -> bool:
        return bool(t.label_smoothing or t.mixup_alpha)

    def parts(self, t: TrainingDefense) -> list[tuple[str, str]]:
        named = ((t.label_smoothing, f"label smoothing {t.label_smoothing:g}", "label smoothing"),
                 (t.mixup_alpha, f"mixup {t.mixup_alpha:g}", "mixup"))
        return [(label, family) for amount, label, family in named if amount]

    def appliers(self, t: TrainingDefense) -> tuple[Applier, ...]:
        return (Applier(TRAINING_HOOK, "training_loss", 10, hook=train_hook),)


def train_hook(t: TrainingDefense, inner: Train) -> Train:
    """``inner`` with the table's loss (seeded by the training's ``seed``)."""
    def train(model, x, y, *, step_loss=None, **kw):
        return inner(model, x, y, step_loss=step_loss_for(t, kw["seed"]), **kw)
    return train


def step_loss_for(t: TrainingDefense, seed: int):
    """Label smoothing / mixup loss for local training, or None (plain cross-entropy, bit-identical)."""
    if t.mixup_alpha > 0:
        return mixup_step_loss(t.mixup_alpha, seed, t.label_smoothing)
    if t.label_smoothing > 0:
        return smoothed_step_loss(t.label_smoothing)
    return None


def smoothed_step_loss(smoothing: float):
    """``fn(model, x, y) -> loss`` with label smoothing, for ``train_locally(step_loss=...)``."""
    from torch import nn

    def step_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(x), y, label_smoothing=smoothing)
    return step_loss


def mixup_step_loss(alpha: float, seed: int, smoothing: float = 0.0):
    """``fn(model, x, y) -> loss`` mixing each batch with a seeded permutation of itself (Zhang et al. 2018)."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)

    def step_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lam = float(torch.distributions.Beta(alpha, alpha).sample()) if alpha > 0 else 1.0
        perm = torch.randperm(len(x), generator=gen)
        out = model(lam * x + (1 - lam) * x[perm])
        ce = nn.functional.cross_entropy
        return lam * ce(out, y, label_smoothing=smoothing) + (1 - lam) * ce(out, y[perm], label_smoothing=smoothing)
    return step_loss


TRAINING = TrainingLossDefense()
