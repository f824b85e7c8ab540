"""Server half of ``[defense]`` on the Message-API stack: what the curious server knows, central DP, privacy rows.

Wrapping order (outermost first)::

    CentralDpRelease -> DifferentialPrivacy{Server,Client}SideFixedClipping -> FixedDenominator
      ->  DefenseTap  ->  CuriousStrategy  ->  FedAvg

Flower's central-DP wrapper (``[defense.central_dp]``) is outermost so that it clips every reply (server-side
clipping) *before* the curious strategy captures it and adds its Gaussian noise *after* FedAvg averaged: the
curious server sees clipped individual updates (what server-side clipping really exposes to the code after the
clipping step; with client-side clipping the ``fixedclipping_mod`` already clipped them) and only the released
aggregate is noised. ``DefenseTap`` sits between them and writes each round's privacy rows to ``metrics.jsonl``,
asking each defense in force (``Defense.privacy_rows``): the epsilon DP-SGD clients report, and the epsilon of
local DP over the rounds aggregated so far (central DP's rows come from ``fedsim.server.central_dp.CentralDpRelease``,
outermost, per release as it ran). Secure aggregation does not use this stack: Flower's SecAgg+ workflow drives a
legacy strategy (``server/secagg.py``), which asks the same method.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable

from flwr.app import Message
from flwr.serverapp.strategy import (DifferentialPrivacyClientSideFixedClipping,
                                     DifferentialPrivacyServerSideFixedClipping, Strategy)

from fedsim.core import messages as K
from fedsim.core.config import ExperimentConfig
from fedsim.core.defense import registry as defense_registry
from fedsim.core.defense.base import PRIVACY_DELTA, STRATEGY, RoundRelease, resolve, sampled_clients
from fedsim.core.defense.central_dp import CentralDp
from fedsim.core.defense.custom import OPTIONS_KEY
from fedsim.core.objref import options_of
from fedsim.core.runfolder import RunFolder
from fedsim.server.central_dp import CentralDpRelease, FixedDenominator
from fedsim.server.strategy import CuriousStrategy
from fedsim.server.wrapping import StrategyWrapper


def known_defenses(cfg: ExperimentConfig) -> dict[str, Any]:
    """Every ``[defense]`` setting (public in our threat model) by its config key (``defense.dp_sgd.enabled``),
    recorded in each ClientUpdate and attack row; each defense says what it records (``Defense.record``)."""
    return defense_registry.record(cfg.defense)


class DefenseTap(StrategyWrapper):
    """Writes the privacy rows of the defenses in force (``Defense.privacy_rows``, as the SecAgg+ stack does):
    epsilon as DP-SGD clients report it (Opacus), and what local DP spent over the rounds actually aggregated (a
    lost round releases nothing); central DP's rows come from ``CentralDpRelease``, as run."""

    def __init__(self, curious: CuriousStrategy, cfg: ExperimentConfig, folder: RunFolder) -> None:
        super().__init__(curious)
        self.curious = curious
        self.cfg = cfg
        self.folder = folder
        self.released = 0

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        eps = [float(m.content[K.METRICS][K.EPSILON]) for m in replies
               if not m.has_error() and K.METRICS in m.content and K.EPSILON in m.content[K.METRICS]]
        arrays, metrics = self.curious.aggregate_train(server_round, replies)
        self.released += arrays is not None
        rnd = RoundRelease(server_round, self.released, aggregated=arrays is not None, client_epsilons=tuple(eps))
        for row in defense_registry.privacy_rows(self.cfg, rnd):
            self.folder.append(row)
        return arrays, metrics


def weighting_key(cfg: ExperimentConfig) -> str:
    """FedAvg's ``weighted_by_key``: equal weights when a defense asks for them (central DP,
    ``fedsim.server.central_dp``), else the claim."""
    return K.UNIT_WEIGHT if defense_registry.equal_weights(cfg.defense) else K.NUM_EXAMPLES


def central_dp_wrapper(strategy: Strategy, cfg: ExperimentConfig, d: CentralDp, *, curious: CuriousStrategy,
                       folder: RunFolder) -> Strategy:
    """``CentralDpRelease -> Flower fixed-clipping wrapper -> FixedDenominator -> strategy``; the wrapper's noise
    and the estimator's denominator are FedAvg's own sample size (``sampled_clients``), the accountant's cohort."""
    wrapper = (DifferentialPrivacyServerSideFixedClipping if d.clipping == "server"
               else DifferentialPrivacyClientSideFixedClipping)
    m = sampled_clients(cfg)
    accepted = lambda: len(curious.accepted)  # noqa: E731 - the replies FedAvg averaged this round
    strategy = wrapper(FixedDenominator(strategy, denominator=m, aggregated=accepted),
                       noise_multiplier=d.noise_multiplier, clipping_norm=d.clip_norm, num_sampled_clients=m)
    return CentralDpRelease(strategy, noise_multiplier=d.noise_multiplier, clip_norm=d.clip_norm, calibrated_for=m,
                            population=cfg.run.num_clients, delta=PRIVACY_DELTA, folder=folder, aggregated=accepted)


#: strategy-wrapper appliers by name (``Applier(STRATEGY, name)``): ``(strategy, cfg, table, *, curious, folder)
#: -> Strategy``; a ``"module:attr"`` name is imported instead and called as a plain Message-API wrapper,
#: ``wrapper(strategy) -> Strategy``, or ``wrapper(strategy, options=...)`` when it takes an ``options`` parameter
#: (``[defense.custom] strategy_wrappers`` and ``.options``, ``fedsim.core.defense.custom``)
STRATEGY_WRAPPERS = {"central_dp": central_dp_wrapper}


def custom_options(factory: Any, table: Any) -> dict[str, Any]:
    """``{"options": [defense.custom.options]}`` for a wrapper whose signature has ``options``, else ``{}``."""
    try:
        takes = "options" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        takes = False
    return {"options": options_of(OPTIONS_KEY, str(table.options or ""))} if takes else {}


def wrap_strategy(curious: CuriousStrategy, cfg: ExperimentConfig, folder: RunFolder) -> Strategy:
    """``[strategy wrappers of the defenses in force, outermost last] -> DefenseTap -> curious`` (central DP:
    ``CentralDpRelease -> Flower fixed-clipping wrapper``)."""
    strategy: Strategy = DefenseTap(curious, cfg, folder)
    for _, table, applier in defense_registry.appliers(cfg.defense, STRATEGY):
        factory = resolve(applier.name, STRATEGY_WRAPPERS, "strategy wrapper")
        if applier.name in STRATEGY_WRAPPERS:
            strategy = factory(strategy, cfg, table, curious=curious, folder=folder)
        else:  # a user's "module:attr" wrapper
            strategy = factory(strategy, **custom_options(factory, table))
    return strategy
