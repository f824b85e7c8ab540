"""The upper bound on the success of *any* reconstruction / re-identification attack against a DP mechanism.

An (epsilon, delta) pair means little to most readers; this is its scale. A mechanism with trade-off curve ``f``
(f-DP, Dong, Roth & Su 2022: ``f(alpha)`` is the smallest false-negative rate of any test, at false-positive rate
``alpha``, telling a dataset with the target from one without) bounds every attack that must single out the
target among candidates drawn from a prior: if a blind guess succeeds with probability ``kappa`` (for a uniform
prior over ``n`` candidates, ``kappa = 1 / n``), no attack, whatever it knows besides the target, succeeds with
probability above ``1 - f(kappa)``:

* Hayes, Mahloujifar & Balle, "Bounding Training Data Reconstruction in DP-SGD", NeurIPS 2023 (reconstruction
  robustness, the prior-aware attack that nearly meets the bound for DP-SGD);
* Kaissis, Hayes, Ziller & Rueckert, "Bounding data reconstruction attacks with the hypothesis testing
  interpretation of differential privacy", 2023 (``ReRo <= 1 - f(kappa)`` for any f-DP mechanism);
* Kulynych, Gomez, Kaissis, Hayes, Balle, du Pin Calmon & Raisaro, "Unifying Re-Identification, Attribute
  Inference, and Data Reconstruction Risks in Differential Privacy", NeurIPS 2025 (the same ``1 - f(kappa)``
  bounds re-identification and attribute inference; ``riskcal``).

``f`` comes from the mechanism's privacy-loss distribution (PLD) as Google's ``dp_accounting`` builds it
(pessimistic discretisation: the curve is never above the true one, so the bound is never below the true bound),
read at ``kappa`` by ``riskcal.analysis.get_beta_from_pld`` (Kulynych et al., Algorithm 1; it symmetrises the
curve of a Poisson-subsampled mechanism, the add/remove relation's curve, which only loosens the bound). Both are
real components, pinned in ``pyproject.toml``; riskcal 1.5.1's pins (``dp-accounting>=0.4.4,<1``, ``scipy>=1.11.3``)
hold with the installed dp-accounting 0.6.

Parameters are those the accounting states (``fedsim.core.accounting``): noise multiplier ``sigma`` (noise std
over the clip norm), sampling rate ``q``, ``steps`` compositions, the neighbouring relation, and the L2
sensitivity under that relation in clip-norm units (DP-SGD, add/remove one example: 1; local DP, replace-one: 2);
a subsampled replace-one mechanism uses dp_accounting's REPLACE_ONE analysis.
Edge cases in closed form: ``sigma = 0`` with ``q = 1`` gives no privacy (bound 1); with ``q < 1`` the target is
never sampled with probability ``(1 - q)^steps`` and the curve is ``(1 - q)^steps (1 - alpha)``; ``sigma = inf``
gives the blind guess (bound ``kappa``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedsim.core.errors import FedsimError

RELATIONS = ("add/remove", "replace-one")
DISCRETIZATION = 1e-3  # dp_accounting's value_discretization_interval: the bound moves by < 1e-3 below this


@dataclass(frozen=True)
class Mechanism:
    """One DP mechanism as its accounting states it: ``steps`` compositions of a Gaussian release of noise std
    ``noise_multiplier`` (in clip-norm units) on a query of ``sensitivity`` (clip-norm units) under ``relation``,
    each Poisson-subsampled at ``sample_rate``. ``in_batch_steps`` of the steps are accounted without sampling
    (the target known to be in those batches: a score conditioned on the target's inclusion)."""

    noise_multiplier: float
    sample_rate: float = 1.0
    steps: int = 1
    sensitivity: float = 1.0
    relation: str = "add/remove"
    in_batch_steps: int = 0

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise ValueError(f"relation {self.relation!r} is not one of {', '.join(RELATIONS)}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate {self.sample_rate} outside (0, 1]")
        if self.steps < 0 or self.in_batch_steps < 0 or self.in_batch_steps > self.steps:
            raise ValueError(f"steps {self.steps}, in_batch_steps {self.in_batch_steps}: need 0 <= in_batch <= steps")
        if self.noise_multiplier < 0 or self.sensitivity <= 0:
            raise ValueError(f"noise_multiplier {self.noise_multiplier} >= 0 and sensitivity {self.sensitivity} > 0")

    def describe(self) -> str:
        q = f", q {self.sample_rate:.3g}" if self.sample_rate < 1 and self.in_batch_steps < self.steps else ""
        cond = f" ({self.in_batch_steps} with the target in the batch: no sampling)" if self.in_batch_steps else ""
        return (f"Gaussian sigma {self.noise_multiplier:g}{q}, {self.steps} step(s){cond}, sensitivity "
                f"{self.sensitivity:g} C ({self.relation})")


def _pld(m: Mechanism):
    """dp_accounting's PLD of the mechanism (pessimistic), or None when it releases nothing (0 steps)."""
    from dp_accounting import NeighboringRelation
    from dp_accounting.pld import privacy_loss_distribution as pld

    relation = NeighboringRelation.ADD_OR_REMOVE_ONE if m.relation == "add/remove" else NeighboringRelation.REPLACE_ONE
    # dp_accounting's REPLACE adjacency takes one record's contribution bound and doubles it itself
    # (privacy_loss_mechanism: effective sensitivity 2 * sensitivity); ours is the distance under the relation
    sensitivity = m.sensitivity / 2 if m.relation == "replace-one" else m.sensitivity
    out = None
    for rate, count in ((m.sample_rate, m.steps - m.in_batch_steps), (1.0, m.in_batch_steps)):
        if count == 0:
            continue
        one = pld.from_gaussian_mechanism(standard_deviation=m.noise_multiplier, sensitivity=sensitivity,
                                          sampling_prob=rate, neighboring_relation=relation,
                                          value_discretization_interval=DISCRETIZATION)
        part = one.self_compose(count) if count > 1 else one
        out = part if out is None else out.compose(part)
    return out


def tradeoff(m: Mechanism, alpha: float) -> float:
    """``f(alpha)``: the mechanism's trade-off curve (false-negative rate of the best test at false-positive rate
    ``alpha``), from its PLD by riskcal; closed forms for no noise and infinite noise."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha {alpha} outside [0, 1]")
    if m.steps == 0 or math.isinf(m.noise_multiplier):
        return 1.0 - alpha
    if m.noise_multiplier == 0:  # blatantly non-private whenever the target is sampled
        never = (1.0 - m.sample_rate) ** (m.steps - m.in_batch_steps) if m.in_batch_steps == 0 else 0.0
        return never * (1.0 - alpha)
    from riskcal.analysis import get_beta_from_pld

    return float(min(1.0 - alpha, max(0.0, float(get_beta_from_pld(_pld(m), alpha=alpha)))))


def reconstruction_bound(m: Mechanism, kappa: float) -> float:
    """``1 - f(kappa)``: no attack whose blind-guess success is ``kappa`` succeeds with higher probability
    (Hayes et al. 2023; Kaissis et al. 2023; Kulynych et al. 2025)."""
    if not 0 < kappa <= 1:
        raise ValueError(f"kappa {kappa} outside (0, 1]")
    return max(kappa, 1.0 - tradeoff(m, kappa))


def gdp_bound(mu: float, kappa: float) -> float:
    """The closed form for mu-GDP (the Gaussian mechanism with ``mu = sensitivity / std``):
    ``1 - f(kappa) = 1 - Phi(Phi^-1(1 - kappa) - mu)`` (Dong, Roth & Su 2022)."""
    from scipy.stats import norm

    return float(1.0 - norm.cdf(norm.ppf(1.0 - kappa) - mu))


def clopper_pearson(hits: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) ``level`` interval of a success rate from ``hits`` of ``trials``
    (``scipy.stats.binomtest(...).proportion_ci(method="exact")``)."""
    if trials <= 0 or not 0 <= hits <= trials:
        raise ValueError(f"hits {hits} of trials {trials}: need 0 <= hits <= trials, trials > 0")
    from scipy.stats import binomtest

    ci = binomtest(int(hits), int(trials)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Measured:
    """A measured success rate beside its bound: ``hits`` of ``trials`` targets, the bound's expected hits summed
    over the targets (each target's own bound, so a mean bound that holds for the pooled rate)."""

    name: str
    hits: int
    trials: int
    bound: float  # mean over the trials of each trial's bound
    kappa: float  # mean chance level

    @property
    def rate(self) -> float:
        return self.hits / self.trials

    @property
    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.hits, self.trials)

    @property
    def above_bound(self) -> bool:
        """The whole 95 % interval above the bound: a calibration bug (the accounting under-states the noise's
        effect, or the attack reads what the mechanism does not release)."""
        return self.interval[0] > self.bound + 1e-9

    def line(self) -> str:
        """``re-identified 0 % [0, 3 %] of 120, bound 14 % (chance 3.1 %)``."""
        lo, hi = self.interval
        low = _pct(lo)[:-2]  # "[0, 3 %]": the unit once
        return (f"{self.name} {_pct(self.rate)} [{low}, {_pct(hi)}] of {self.trials}, bound {_pct(self.bound)} "
                f"(chance {_pct(self.kappa)})")


class BoundViolation(FedsimError, RuntimeError):
    """A measured success rate above its DP bound beyond its interval (raised by the callers' checks)."""


def check_measured(measured: list[Measured], where: str = "") -> None:
    """Raise :class:`BoundViolation` (one line) for the first rate whose 95 % interval lies above its bound."""
    for m in measured:
        if m.above_bound:
            lo, _ = m.interval
            raise BoundViolation(f"{where}{': ' if where else ''}{m.name} {_pct(m.rate)} of {m.trials} (95 % CI low "
                                 f"{_pct(lo)}) is above the DP bound {_pct(m.bound)}: calibration bug (noise, "
                                 "sensitivity or sampling accounted wrong, or the attack reads what is not released)")


def _pct(x: float) -> str:
    v = 100 * x
    return f"{v:.0f} %" if v == 0 or v >= 10 or v == round(v) else f"{v:.2g} %"
