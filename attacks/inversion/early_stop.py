"""Early stopping on a plateau of the engine's own matching loss (no ground truth).

The rule watches the number :class:`fedsim.attacks.inversion.core.BestTracker` keeps: the best matching loss
seen so far (minimum over restarts), the same server-side number that picks the returned iterate. A plateau is
``patience`` consecutive steps in which that best value did not fall below ``ref * (1 - rel_tol)``, where ``ref``
is the value at the last counted improvement (a relative tolerance, so the rule is the same for a cosine distance
near 1e-3 and an L2 distance near 1e2).

On a plateau a run with a step-decay schedule (Inverting Gradients' lr x0.1 at 3/8, 5/8, 7/8 of the budget) jumps
to its next phase at once (the lr drop the schedule would have made later, the way ``ReduceLROnPlateau`` works);
in the last phase, or without a schedule (L-BFGS methods), the run stops. The trace then records the steps actually
run and ``stop_reason="plateau"``. ``early_stop=None`` (the default) leaves the engine exactly as before.

The default ``patience`` and ``rel_tol`` come from ``benchmarks/quality_per_second.py``
(docs/benchmarks/quality_per_second.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

STOP_REASONS = ("budget", "plateau", "non-finite")


@dataclass(frozen=True)
class EarlyStop:
    """Plateau rule: stop (or jump to the next lr phase) after ``patience`` steps without a relative improvement
    of ``rel_tol`` of the tracked best matching loss; never before ``min_steps`` steps."""

    patience: int = 50
    rel_tol: float = 1e-3
    min_steps: int = 0

    def __post_init__(self) -> None:
        if self.patience < 1 or not self.rel_tol >= 0 or self.min_steps < 0:
            raise ValueError(f"early_stop: need patience >= 1, rel_tol >= 0, min_steps >= 0, got {self}")


def as_early_stop(value: Any) -> EarlyStop | None:
    """The ``early_stop=`` option: None / False (off), True (the measured default), a dict of fields, or an
    :class:`EarlyStop`."""
    if value is None or value is False:
        return None
    if value is True:
        return EarlyStop()
    if isinstance(value, EarlyStop):
        return value
    if isinstance(value, dict):
        return EarlyStop(**value)
    raise ValueError(f"early_stop: expected None, a bool, a dict or an EarlyStop, got {value!r}")


class Plateau:
    """Counts steps since the tracked best value last improved by the relative tolerance."""

    def __init__(self, rule: EarlyStop) -> None:
        self.rule = rule
        self.ref = math.inf
        self.since = 0
        self.lr_drops = 0

    def update(self, best: float, step: int) -> bool:
        """Feed the best matching loss after ``step`` (0-based); True when the run is on a plateau."""
        if best < self.ref * (1.0 - self.rule.rel_tol):  # the first finite value always counts (ref = inf)
            self.ref, self.since = best, 0
            return False
        self.since += 1
        return self.since >= self.rule.patience and step + 1 >= self.rule.min_steps

    def next_phase(self, schedule: Any, optimizer: torch.optim.Optimizer) -> bool:
        """Apply the schedule's next lr drop now (MultiStepLR); False when there is none left (then: stop)."""
        if not isinstance(schedule, torch.optim.lr_scheduler.MultiStepLR):
            return False
        ahead = sorted(m for m in schedule.milestones if m > schedule.last_epoch)
        if not ahead:
            return False
        count = schedule.milestones.pop(ahead[0])
        for group in optimizer.param_groups:
            group["lr"] *= schedule.gamma ** count
        self.since, self.lr_drops = 0, self.lr_drops + 1
        return True
