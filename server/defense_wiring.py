"""Server half of ``[defense]`` on the Message-API stack: what the curious server knows, central DP, privacy rows.

Wrapping order (outermost first)::

    DifferentialPrivacy{Server,Client}SideFixedClipping  ->  DefenseTap  ->  CuriousStrategy  ->  FedAvg

Flower's central-DP wrapper (``[defense.central_dp]``) is outermost so that it clips every reply (server-side
clipping) *before* the curious strategy captures it and adds its Gaussian noise *after* FedAvg averaged: the
curious server sees clipped individual updates (what server-side clipping really exposes to the code after the
clipping step; with client-side clipping the ``fixedclipping_mod`` already clipped them) and only the released
aggregate is noised. ``DefenseTap`` sits between them and writes each round's privacy rows to ``metrics.jsonl``:
the epsilon DP-SGD clients report, and the epsilon of local DP over the rounds aggregated so far (central DP's rows
come from ``server.central_dp.CentralDpRelease``, outermost, per release as it ran). Secure aggregation does not use this stack: Flower's SecAgg+
workflow drives a legacy strategy (``server/secagg.py``).
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from flwr.app import Message
from flwr.serverapp.strategy import (DifferentialPrivacyClientSideFixedClipping,
                                     DifferentialPrivacyServerSideFixedClipping, Strategy)

from fedsim import messages as K
from fedsim.accounting import spent_for_config
from fedsim.config import ExperimentConfig
from fedsim.defense_config import sampled_clients
from fedsim.rows import PrivacyRow
from fedsim.runfolder import RunFolder
from server.central_dp import CentralDpRelease
from server.strategy import CuriousStrategy
from server.wrapping import StrategyWrapper

PRIVACY_DELTA = 1e-5  # delta at which central / local DP epsilon is reported (local DP: the mod's own delta)
AGGREGATE_CLIENT = 9999  # client id of a secure aggregate in captures and rows (its cohort in defenses["cohort"])


def known_defenses(cfg: ExperimentConfig) -> dict[str, Any]:
    """Every ``[defense]`` setting (public in our threat model) by its config key (``defense.dp_sgd.enabled``),
    recorded in each ClientUpdate and attack row."""
    return {k: v for k, v in cfg.to_flat().items() if k.startswith("defense.")}


def privacy_row(cfg: ExperimentConfig, server_round: int, epsilons: list[float]) -> PrivacyRow | None:
    """The round's DP-SGD privacy row (largest epsilon any client reported), or None."""
    if not epsilons:
        return None
    return PrivacyRow(round=server_round, epsilon=max(epsilons), delta=cfg.defense.dp_sgd.delta,
                      accountant="opacus-rdp", mechanism="dp_sgd", time=time.time())


class DefenseTap(StrategyWrapper):
    """Writes the privacy rows: DP-SGD epsilon as its clients report it (Opacus), and central / local DP
    epsilon from ``fedsim.accounting`` over the rounds actually aggregated (a lost round releases nothing)."""

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
        row = privacy_row(self.cfg, server_round, eps)
        if row is not None:
            self.folder.append(row)
        if arrays is not None:
            self.released += 1
            for spent in spent_for_config(self.cfg, self.released, delta=PRIVACY_DELTA):
                # DP-SGD clients report their own (row above); central DP: CentralDpRelease, per release as run
                if spent.mechanism not in ("dp_sgd", "central_dp"):
                    self.folder.append(PrivacyRow(round=server_round, epsilon=spent.epsilon, delta=spent.delta,
                                                  accountant=spent.accountant, mechanism=spent.mechanism,
                                                  time=time.time()))
        return arrays, metrics


def weighting_key(cfg: ExperimentConfig) -> str:
    """FedAvg's ``weighted_by_key``: equal weights under central DP (``server.central_dp``), else the claim."""
    return K.UNIT_WEIGHT if cfg.defense.central_dp.clipping != "off" else K.NUM_EXAMPLES


def wrap_strategy(curious: CuriousStrategy, cfg: ExperimentConfig, folder: RunFolder) -> Strategy:
    """``[CentralDpRelease -> Flower fixed-clipping wrapper] -> DefenseTap -> curious``; the wrapper is calibrated
    for FedAvg's own sample size (``sampled_clients``), the count the accountant uses too."""
    strategy: Strategy = DefenseTap(curious, cfg, folder)
    d = cfg.defense.central_dp
    if d.clipping != "off":
        wrapper = (DifferentialPrivacyServerSideFixedClipping if d.clipping == "server"
                   else DifferentialPrivacyClientSideFixedClipping)
        m = sampled_clients(cfg)
        strategy = wrapper(strategy, noise_multiplier=d.noise_multiplier, clipping_norm=d.clip_norm,
                           num_sampled_clients=m)
        strategy = CentralDpRelease(strategy, noise_multiplier=d.noise_multiplier, calibrated_for=m,
                                    population=cfg.run.num_clients, delta=PRIVACY_DELTA, folder=folder,
                                    aggregated=lambda: len(curious.accepted))
    return strategy
