"""Central DP as it runs: FedAvg's fixed-size cohort, a fixed denominator, replace-one accounting.

**The release.** Round ``t`` samples a cohort of ``m`` of the ``N`` clients without replacement (Flower's FedAvg,
``m = max(int(N f), min_train_nodes)``, :func:`fedsim.core.defense.base.sampled_clients`), clips every reply's
update to ``C`` and releases::

    W_t + sum_{accepted i} clip_C(u_i) / m  +  N(0, (z C / m)^2)

A reply that drops, errs or is rejected contributes zero: it lowers the signal, never the denominator ``m``.

**Why the fixed denominator.** FedAvg divides by the number ``n`` of replies it got. With that denominator one
client added or removed moves the mean by up to ``2 C / n`` (``n`` moves with it), so the old accounting at
``C / n`` (add/remove, Flower's assumption too) understated epsilon (issue 35, defect 1). With ``m`` fixed by the
server before any reply is seen, the sum of at most ``m`` vectors of norm <= C changes by at most ``2 C / m``
when one client's data is replaced by any other (replace-one).

**Why this relation and not McMahan et al.'s.** DP-FedAvg (McMahan et al., ICLR 2018) samples clients by Poisson
sampling and divides by the expected cohort ``qN`` (add/remove, ``C / (qN)``). fedsim keeps Flower's FedAvg
sampling (a fixed-size sample without replacement, the ``train.fraction_train`` / ``min_train_nodes`` that the
captures, attacks, faults and SecAgg+ already share) and accounts what that sampling gives: replace-one, where
amplification by sampling without replacement is proven (Wang, Balle & Kasiviswanathan, AISTATS 2019;
``dp_accounting.SampledWithoutReplacementDpEvent``, which ``dp_accounting``'s RDP accountant accepts only
under replace-one). One relation, no choice to get wrong. The amplification assumes the cohort is not
published: epsilon is about the released model to anyone but the server (central DP never protects against the
server, which sees the individual updates).

**What is Flower's, what is ours.** Flower's ``DifferentialPrivacy{Server,Client}SideFixedClipping`` (built with
``num_sampled_clients = m``) is kept for clipping (server side; client side its ``fixedclipping_mod``) and for
the noise ``N(0, (z C / m)^2)`` it adds after aggregation. It cannot release the fixed-denominator estimator:
it noises whatever its inner strategy returns, and FedAvg returns the mean over ``n`` replies. So
:class:`FixedDenominator`, inside Flower's wrapper, turns FedAvg's equal-weight mean over the ``n`` accepted
replies into ``W_t + (n / m) (mean - W_t) = W_t + sum / m`` (exact for the clipped replies Flower's wrapper hands
it). The accountant is ours too (``fedsim.core.accounting.central_dp_releases_epsilon``, Google's
``dp_accounting`` RDP): Flower's wrapper accountant has no sampling without replacement, and it would drop
every round whose reply count differs from ``m`` (``validate_replies(strict=True)``), which this estimator
does not need. Equal weights: FedAvg is built with ``weighted_by_key = UNIT_WEIGHT`` and
:class:`CentralDpRelease` stamps weight 1 on every reply (a client cannot claim more).

Not covered by this epsilon: the server's reply screen (``server/validation.py``) rejects a reply whose norm or
claim is far above the lower median of *other* clients' recent ones, so in principle one client's data can
change whether another's reply is summed; the guarantee above assumes rejections depend on the reply alone
(docs/details.md, "DP relations").
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedsim.core import messages as K
from fedsim.core.accounting import central_dp_releases_epsilon, relation_of
from fedsim.core.rows import PRIVACY_FORMAT, PrivacyRow
from fedsim.core.runfolder import RunFolder
from fedsim.server.wrapping import StrategyWrapper

log = logging.getLogger("fedsim.server")

ACCOUNTANT = "dp-accounting-rdp"  # Google's dp_accounting RDP, sampling without replacement, replace-one


class CentralDpAccount:
    """The releases so far, each a Gaussian of multiplier ``z / 2`` on a cohort of ``sampled`` of
    ``population`` clients (replace-one); epsilon at ``delta`` by ``dp_accounting``."""

    def __init__(self, population: int, delta: float) -> None:
        self.delta = delta
        self.population = population
        self.releases: list[tuple[float, int, int]] = []

    def compose(self, noise_multiplier: float, sampled: int) -> float:
        """Add one release of multiplier ``noise_multiplier`` (std / sensitivity) over a cohort of ``sampled``;
        epsilon so far."""
        self.releases.append((noise_multiplier, min(sampled, self.population), self.population))
        return self.epsilon()

    def epsilon(self) -> float:
        return central_dp_releases_epsilon(self.releases, self.delta)


class FixedDenominator(StrategyWrapper):
    """Inside Flower's DP wrapper: FedAvg's equal-weight mean over the ``n`` accepted replies becomes
    ``W + sum / m`` (``m = denominator``), so a dropped or rejected reply lowers the signal, not the denominator."""

    def __init__(self, inner: Strategy, *, denominator: int, aggregated: Callable[[], int]) -> None:
        super().__init__(inner)
        self.denominator = denominator
        self.aggregated = aggregated
        self.sent: ArrayRecord | None = None

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.sent = arrays
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        if arrays is None or self.sent is None:
            return arrays, metrics
        scale = self.aggregated() / self.denominator
        out = {}
        for name, arr in arrays.items():
            mean, sent = arr.numpy(), self.sent[name].numpy()
            if mean.dtype.kind == "f":  # what Flower's wrapper clips and noises; integer buffers pass through
                mean = (sent + scale * (mean - sent)).astype(mean.dtype)
            out[name] = Array(mean)
        return ArrayRecord(out), metrics


class CentralDpRelease(StrategyWrapper):
    """Outermost part of central DP: stamps equal weights, writes the privacy row of each release.

    ``aggregated()`` returns how many replies the inner FedAvg really averaged in the round just aggregated (the
    curious strategy's accepted updates)."""

    def __init__(self, inner: Strategy, *, noise_multiplier: float, clip_norm: float, calibrated_for: int,
                 population: int, delta: float, folder: RunFolder, aggregated: Callable[[], int]) -> None:
        super().__init__(inner)
        self.noise_multiplier = noise_multiplier
        self.calibrated_for = calibrated_for
        self.relation = relation_of("central_dp", clip_norm, calibrated_for)
        self.account = CentralDpAccount(population, delta)
        self.folder = folder
        self.aggregated = aggregated
        self.sampled = calibrated_for

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self.sampled = len(messages) or self.calibrated_for
        if messages and len(messages) != self.calibrated_for:
            log.warning("round %d: central DP divides by %d sampled clients but %d were sampled (connected "
                        "SuperNodes differ from run.num_clients); the privacy row accounts a cohort of %d",
                        server_round, self.calibrated_for, len(messages), len(messages))
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
            z = self.noise_multiplier / 2  # std z C / m over sensitivity 2 C / m (replace-one)
            eps = self.account.compose(z, max(self.sampled, self.calibrated_for))
            if n != self.calibrated_for:
                log.info("round %d: central DP summed %d of the %d sampled replies (the denominator stays %d: "
                         "less signal, same noise)", server_round, n, self.calibrated_for, self.calibrated_for)
            r = self.relation
            self.folder.append(PrivacyRow(round=server_round, epsilon=eps, delta=self.account.delta,
                                          accountant=ACCOUNTANT, mechanism="central_dp", time=time.time(),
                                          noise_multiplier=z, clients=n, sampled=self.calibrated_for,
                                          format=PRIVACY_FORMAT, unit=r.unit, relation=r.relation,
                                          sensitivity=r.sensitivity))
        return arrays, metrics
