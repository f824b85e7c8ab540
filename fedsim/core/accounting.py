"""Privacy accounting for every DP mechanism fedsim runs: pure functions of the mechanism's parameters.

One accountant family for all three: Opacus' RDP accountant (``opacus.accountants.RDPAccountant``: Renyi DP of the
(subsampled) Gaussian mechanism, composed by adding RDP over releases, converted to (epsilon, delta) with Opacus'
conversion). Flower 1.41's own ``flwr.supercore.privacy_accounting.RdpAccountant`` (the ``accountant=`` of its
DP wrappers) computes the same RDP of the Gaussian mechanism with Google's ``dp-accounting`` (``flwr[dp]``); the
server's central-DP rows use it (``fedsim.server.central_dp``: this core module does not import ``flwr``), and
``tests/test_trust_central_dp.py`` checks it against :func:`composed_gaussian_epsilon` here. With
``sample_rate = 1`` (Flower's ``NO_AMPLIFICATION``) Opacus' RDP of one release is ``alpha / (2 z^2)``, the
Gaussian mechanism's, so the two agree up to the grid of orders.

=================  ===============================================  ==========================================
mechanism          one release                                      composed over
=================  ===============================================  ==========================================
DP-SGD (Opacus)    Poisson-subsampled Gaussian, rate q = B / n,      local steps x rounds the client took part
                   noise multiplier sigma (per-example clipping)    in (record-level DP of one client's data)
central DP         Gaussian on the equal-weight mean of the n       rounds that actually aggregated (a lost
(Flower fixed      clipped updates FedAvg averaged: noise std       round releases nothing), each at its own
clipping)          z C / m (m = sampled_clients), sensitivity       effective multiplier; client-level DP,
                   C / n: effective multiplier z n / m              add/remove one client, no amplification
                   (``fedsim.server.central_dp``)                          by sampling (the server knows the sample)
local DP           LocalDpMod: clip to C, noise std                 rounds the client sent an update in;
(Flower            C sqrt(2 ln(1.25/delta)) / epsilon, i.e. noise   RDP composition of that Gaussian
LocalDpMod)        multiplier z = sqrt(2 ln(1.25/delta)) / epsilon  (``local_dp_epsilon``), and the basic
                   with sensitivity C (Flower's calibration; under  composition (R eps, R delta) that the
                   replace-one neighbours the sensitivity is 2C)    mod's per-release claim gives
=================  ===============================================  ==========================================

No noise means no privacy: every function returns ``math.inf`` for a zero noise multiplier.
"""

from __future__ import annotations

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


def composed_gaussian_epsilon(noise_multipliers: list[float], delta: float) -> float:
    """Epsilon at ``delta`` of Gaussian releases with different noise multipliers (one per release), by Opacus'
    RDP accountant: central DP as it ran, each round at its effective multiplier (``fedsim.server.central_dp``)."""
    if not noise_multipliers:
        return 0.0
    if min(noise_multipliers) <= 0:
        return math.inf
    from collections import Counter

    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(float(z), 1.0, int(n)) for z, n in Counter(noise_multipliers).items()]
    return float(acc.get_epsilon(delta))


def dp_sgd_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """DP-SGD (Opacus, Poisson sampling): ``steps`` local steps over all rounds at rate ``q = B / n``."""
    return gaussian_epsilon(noise_multiplier, steps, delta, sample_rate)


def central_dp_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """Flower's central DP with fixed clipping, client-level (add/remove one client): one Gaussian release of
    noise multiplier ``z`` per round that aggregated, no amplification. This is the figure of the mechanism as
    configured (every sampled reply averaged with equal weights); the server's privacy rows
    (``fedsim.server.central_dp``) account each release at its effective multiplier instead."""
    return gaussian_epsilon(noise_multiplier, rounds, delta)


def local_dp_noise_multiplier(epsilon: float, delta: float) -> float:
    """LocalDpMod's noise std divided by its clipping norm: ``sqrt(2 ln(1.25 / delta)) / epsilon``."""
    if epsilon <= 0 or not 0 < delta < 1:
        raise ValueError(f"LocalDpMod needs epsilon > 0 and delta in (0, 1), got {epsilon}, {delta}")
    return math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def local_dp_epsilon(epsilon: float, delta: float, rounds: int, target_delta: float | None = None) -> float:
    """Epsilon at ``target_delta`` (default ``delta``) of ``rounds`` LocalDpMod releases of one client, composed
    in RDP (the Gaussian mechanism that the mod's (epsilon, delta) calibrates)."""
    return gaussian_epsilon(local_dp_noise_multiplier(epsilon, delta), rounds, target_delta or delta)


def local_dp_basic(epsilon: float, delta: float, rounds: int) -> tuple[float, float]:
    """Basic composition of ``rounds`` (epsilon, delta)-DP releases: ``(rounds * epsilon, rounds * delta)``."""
    return rounds * epsilon, rounds * delta


@dataclass(frozen=True)
class Spent:
    """Privacy spent by one mechanism of a run."""

    mechanism: str
    epsilon: float
    delta: float
    accountant: str = ACCOUNTANT
    releases: int = 0
    note: str = ""
