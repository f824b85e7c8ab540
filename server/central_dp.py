"""Central DP as it ran: one sampled-client count, equal weights, and the epsilon of the noise really added.

Flower's fixed-clipping wrappers (``DifferentialPrivacy{Server,Client}SideFixedClipping``, McMahan et al., "Learning
Differentially Private Recurrent Language Models", ICLR 2018) add Gaussian noise of std ``z C / m`` to FedAvg's
output, ``m`` being the ``num_sampled_clients`` they were built with. That is the Gaussian mechanism of noise
multiplier ``z`` (client level, add/remove one client) only when the output is the *unweighted* mean of exactly
``m`` clipped updates. Two things made fedsim's release differ from that:

* FedAvg weights replies by their claimed ``num-examples``; the sensitivity of a weighted mean to one client is
  ``C w_max / sum(w)``, not ``C / m``. Here FedAvg is built with ``weighted_by_key = UNIT_WEIGHT`` and
  :class:`CentralDpRelease` stamps weight 1 on every reply before Flower's wrapper sees it (what Flower's own
  accounted path requires: ``_validate_uniform_weights``). The server stamps it, so a client cannot claim more.
* Fewer replies than ``m`` (dropouts, rejections, a reply the wrappers broke) leave the noise calibrated for ``m``
  on a mean over ``n < m`` clients: the effective noise multiplier of that release is ``z n / m``.
  :class:`CentralDpRelease` counts the replies FedAvg really averaged (those the curious strategy accepted) and
  composes each round's release at its own effective multiplier.

``m`` is FedAvg's own sampling rule, :func:`fedsim.core.defense_config.sampled_clients` (``max(int(N f), min_train)``),
the one count that FedAvg, the wrapper and the accountant share. Accounting is Flower's ``RdpAccountant``
(``flwr.supercore.privacy_accounting``, Google's ``dp-accounting`` RDP, no amplification by sampling: the server
knows whom it sampled); ``tests/test_trust_central_dp.py`` checks it against fedsim's Opacus figure and against
the noise measured from the captures. We do not pass the accountant to Flower's wrapper: with one it drops every
round whose reply count differs from ``m`` (``validate_replies(strict=True)``), where fedsim keeps the round and
accounts for the weaker noise.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable, Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from flwr.supercore.privacy_accounting import (GaussianPrivacyEvent, NeighboringRelation, PrivacyConfig,
                                               SamplingMethod)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

from fedsim.core import messages as K
from fedsim.core.rows import PrivacyRow
from fedsim.core.runfolder import RunFolder
from fedsim.server.wrapping import StrategyWrapper

log = logging.getLogger("fedsim.server")

ACCOUNTANT = "flwr-rdp"  # Flower's RdpAccountant (dp-accounting), no amplification


def effective_noise_multiplier(noise_multiplier: float, aggregated: int, calibrated_for: int) -> float:
    """Noise std ``z C / m`` on an equal-weight mean of ``n`` clipped updates (sensitivity ``C / n``): ``z n / m``."""
    if aggregated <= 0 or calibrated_for <= 0:
        raise ValueError(f"aggregated={aggregated} and calibrated_for={calibrated_for} must be positive")
    return noise_multiplier * aggregated / calibrated_for


class CentralDpAccount:
    """Flower's RDP accountant over the releases as they ran (one Gaussian event per aggregated round)."""

    def __init__(self, population: int, delta: float) -> None:
        self.delta = delta
        self.population = population
        self.releases = 0
        self.noiseless = False  # a zero-noise release: no privacy from then on
        self._acc = RdpAccountant(PrivacyConfig(target_delta=delta, population_size=population,
                                                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                                                sampling_method=SamplingMethod.NO_AMPLIFICATION))

    def compose(self, noise_multiplier: float, aggregated: int) -> float:
        """Add one release of effective multiplier ``noise_multiplier`` over ``aggregated`` clients; epsilon so far."""
        self.releases += 1
        if noise_multiplier <= 0:
            self.noiseless = True
        else:
            self._acc.compose(GaussianPrivacyEvent(noise_multiplier=noise_multiplier,
                                                   sample_size=min(aggregated, self.population),
                                                   population_size=self.population))
        return self.epsilon()

    def epsilon(self) -> float:
        if self.noiseless:
            return math.inf
        return float(self._acc.get_epsilon(self.delta)) if self._acc.num_releases else 0.0


class CentralDpRelease(StrategyWrapper):
    """Outermost part of central DP: stamps equal weights, checks the sample, writes the privacy row per release.

    ``aggregated()`` returns how many replies the inner FedAvg really averaged in the round just aggregated (the
    curious strategy's accepted updates)."""

    def __init__(self, inner: Strategy, *, noise_multiplier: float, calibrated_for: int, population: int,
                 delta: float, folder: RunFolder, aggregated: Callable[[], int]) -> None:
        super().__init__(inner)
        self.noise_multiplier = noise_multiplier
        self.calibrated_for = calibrated_for
        self.account = CentralDpAccount(population, delta)
        self.folder = folder
        self.aggregated = aggregated

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        if messages and len(messages) != self.calibrated_for:
            log.warning("round %d: central DP noise is calibrated for %d sampled clients but %d were sampled "
                        "(connected SuperNodes differ from run.num_clients); the privacy row accounts for it",
                        server_round, self.calibrated_for, len(messages))
        return messages

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        for msg in replies:
            if not msg.has_error() and K.METRICS in msg.content:
                msg.content[K.METRICS][K.UNIT_WEIGHT] = 1.0
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        if arrays is not None:
            n = self.aggregated()
            z = effective_noise_multiplier(self.noise_multiplier, n, self.calibrated_for)
            eps = self.account.compose(z, n)
            if n != self.calibrated_for:
                log.warning("round %d: central DP averaged %d of the %d clients its noise was calibrated for: "
                            "effective noise multiplier %.4g (configured %.4g)", server_round, n,
                            self.calibrated_for, z, self.noise_multiplier)
            self.folder.append(PrivacyRow(round=server_round, epsilon=eps, delta=self.account.delta,
                                          accountant=ACCOUNTANT, mechanism="central_dp", time=time.time(),
                                          noise_multiplier=z, clients=n, sampled=self.calibrated_for))
        return arrays, metrics
