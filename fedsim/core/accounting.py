"""Privacy accounting for every DP mechanism fedsim runs: pure functions of the mechanism's parameters.

Each mechanism has one neighbouring relation, stated in its privacy rows (``unit``, ``relation``,
``sensitivity``: :func:`relation_of`) and used by its accountant:

=================  ========  ============  ================  =================================================
mechanism          unit      relation      sensitivity       one release, composed over
=================  ========  ============  ================  =================================================
DP-SGD (Opacus)    example   add-remove    C (clip norm)     Poisson-subsampled Gaussian, rate q = B / n, noise
                                                             multiplier sigma; local steps x rounds (Opacus RDP)
central DP         client    replace-one   2 C / m           ``sum(clipped updates) / m + N(0, (z C / m)^2)``,
(fixed-size                                                  m = FedAvg's cohort, sampled without replacement
cohort, fixed                                                from N; multiplier z / 2, amplified by sampling
denominator m)                                               without replacement (``dp_accounting`` RDP,
                                                             Wang, Balle & Kasiviswanathan, AISTATS 2019);
                                                             rounds that aggregated
local DP           client    replace-one   2 C               LocalDpMod: clip to C, noise std C sqrt(2 ln(1.25 /
(Flower                                                      delta)) / epsilon (Flower's calibration at C):
LocalDpMod)                                                  multiplier sqrt(2 ln(1.25 / delta)) / (2 epsilon);
                                                             rounds the client released in (RDP)
=================  ========  ============  ================  =================================================

Why these relations: DP-SGD's per-example clipping bounds what one added or removed example adds to a noised sum
(Abadi et al. 2016; Opacus). A client's local-DP release is one clipped update: a neighbouring client's update
can be any other vector of norm <= C, so the distance is 2 C (replace-one), not C. Central DP releases a mean;
a mean whose denominator is the number of replies moves by up to 2 C / n when one client is added or removed
(the denominator moves too), so fedsim fixes the denominator to the sampled cohort m (a reply that drops or is
rejected contributes zero: it lowers the signal, never the denominator) and, the cohort being a fixed-size sample
without replacement, accounts it under replace-one, the relation for which the subsampling analysis of sampling
without replacement holds (``dp_accounting`` refuses it under add/remove). ``fedsim.server.central_dp`` says why
this and not McMahan et al.'s Poisson client sampling (ICLR 2018).

Accountants: Opacus' ``RDPAccountant`` for DP-SGD and local DP (Gaussian, Poisson-subsampled or not), Google's
``dp_accounting`` RDP for central DP (Opacus has no sampling without replacement; ``dp_accounting`` is what
Flower's ``flwr[dp]`` accountant wraps). Rows and sweep read the same functions.

No noise means no privacy: every function returns ``math.inf`` for a zero noise multiplier.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

ACCOUNTANT = "opacus-rdp"


def gaussian_epsilon(noise_multiplier: float, releases: int, delta: float, sample_rate: float = 1.0) -> float:
    """Epsilon at ``delta`` of ``releases`` (subsampled) Gaussian releases with noise ``noise_multiplier``
    (std / sensitivity), by Opacus' RDP accountant. ``sample_rate = 1``: the plain Gaussian mechanism."""
    if releases <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate {sample_rate} outside (0, 1]")
    if not 0 < delta < 1:
        raise ValueError(f"delta {delta} outside (0, 1)")
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(float(noise_multiplier), float(sample_rate), int(releases))]
    return float(acc.get_epsilon(delta))


def dp_sgd_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """DP-SGD (Opacus, Poisson sampling): ``steps`` local steps over all rounds at rate ``q = B / n``."""
    return gaussian_epsilon(noise_multiplier, steps, delta, sample_rate)


def central_dp_epsilon(noise_multiplier: float, rounds: int, delta: float, sampled: int = 1,
                       population: int = 1) -> float:
    """Central DP as fedsim runs it (``fedsim.server.central_dp``): ``rounds`` releases of ``sum / m + N(0,
    (z C / m)^2)`` over a cohort of ``sampled = m`` of ``population`` clients drawn without replacement;
    client level, replace-one (sensitivity ``2 C / m``, multiplier ``z / 2``). ``sampled = population``
    (the default 1 of 1): every client every round, no amplification."""
    return central_dp_releases_epsilon([(noise_multiplier / 2, sampled, population)] * rounds, delta)


def central_dp_releases_epsilon(releases: list[tuple[float, int, int]], delta: float) -> float:
    """Epsilon at ``delta`` of central-DP releases ``(multiplier, sampled, population)``, each a Gaussian of
    that multiplier (std / sensitivity) on a sample of ``sampled`` of ``population`` without replacement,
    composed in RDP under replace-one by ``dp_accounting`` (``SampledWithoutReplacementDpEvent``)."""
    if not releases:
        return 0.0
    if min(z for z, _, _ in releases) <= 0:
        return math.inf
    if not 0 < delta < 1:
        raise ValueError(f"delta {delta} outside (0, 1)")
    from collections import Counter

    import numpy as np  # here, not at import: the CLI's help and config errors load this module without numpy
    from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

    total, orders = None, None
    for (z, m, n), count in Counter(releases).items():
        if not 0 < m <= n:
            raise ValueError(f"sample of {m} clients out of a population of {n}")
        orders, rdp = _wor_gaussian_rdp(float(z), int(m), int(n))
        total = count * np.asarray(rdp) + (0 if total is None else total)
    return float(compute_epsilon(np.asarray(orders), total, delta)[0])


@functools.lru_cache(maxsize=256)
def _wor_gaussian_rdp(z: float, m: int, n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(orders, RDP) of one Gaussian release of multiplier ``z`` on a sample of ``m`` of ``n`` without
    replacement, replace-one (``dp_accounting``). Cached: its computation takes seconds per (z, m, n), and a run
    composes the same release every round."""
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    acc = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    acc.compose(dp_accounting.SampledWithoutReplacementDpEvent(n, m, dp_accounting.GaussianDpEvent(z)))
    return tuple(map(float, acc.orders)), tuple(map(float, acc.rdp))


def local_dp_noise_multiplier(epsilon: float, delta: float) -> float:
    """LocalDpMod's noise std divided by its clipping norm: ``sqrt(2 ln(1.25 / delta)) / epsilon`` (Flower
    calibrates at ``sensitivity = clip_norm``)."""
    if epsilon <= 0 or not 0 < delta < 1:
        raise ValueError(f"LocalDpMod needs epsilon > 0 and delta in (0, 1), got {epsilon}, {delta}")
    return math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def local_dp_epsilon(epsilon: float, delta: float, rounds: int, target_delta: float | None = None) -> float:
    """Epsilon at ``target_delta`` (default ``delta``) of ``rounds`` LocalDpMod releases of one client, composed
    in RDP, under replace-one (sensitivity ``2 C``: multiplier half of :func:`local_dp_noise_multiplier`)."""
    return gaussian_epsilon(local_dp_noise_multiplier(epsilon, delta) / 2, rounds, target_delta or delta)


def local_dp_basic(epsilon: float, delta: float, rounds: int) -> tuple[float, float]:
    """Basic composition of ``rounds`` (epsilon, delta)-DP releases: ``(rounds * epsilon, rounds * delta)``."""
    return rounds * epsilon, rounds * delta


@dataclass(frozen=True)
class Relation:
    """What a mechanism's epsilon is about: whose data (``unit``), which neighbours, the L2 sensitivity."""

    unit: str          # "example" | "client"
    relation: str      # "add-remove" | "replace-one"
    sensitivity: float


def relation_of(mechanism: str, clip_norm: float, cohort: int = 1) -> Relation:
    """The one neighbouring relation of each built-in mechanism (table above); ``cohort``: central DP's m."""
    if mechanism == "dp_sgd":
        return Relation("example", "add-remove", clip_norm)
    if mechanism == "central_dp":
        return Relation("client", "replace-one", 2 * clip_norm / cohort)
    if mechanism == "local_dp":
        return Relation("client", "replace-one", 2 * clip_norm)
    raise ValueError(f"mechanism {mechanism!r}: choose dp_sgd, central_dp or local_dp")


@dataclass(frozen=True)
class Spent:
    """Privacy spent by one mechanism of a run."""

    mechanism: str
    epsilon: float
    delta: float
    accountant: str = ACCOUNTANT
    releases: int = 0
    note: str = ""
    relation: Relation | None = None
