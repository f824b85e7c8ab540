"""Server half of ``[defense]``: what the curious server knows, central-DP wrappers, the SecAgg aggregate tap.

Wrapping order (outermost first)::

    DifferentialPrivacy{Server,Client}SideFixedClipping  ->  DefenseTap  ->  CuriousStrategy  ->  FedAvg

Flower's central-DP wrapper is outermost so that it clips every reply (server-side clipping) *before* the curious
strategy captures it and adds its Gaussian noise *after* FedAvg averaged: the curious server sees clipped
individual updates (what server-side clipping really exposes to the code after the clipping step; with
client-side clipping the ``fixedclipping_mod`` already clipped them) and only the released aggregate is noised.
``DefenseTap`` sits between them: it writes each round's privacy metrics (``epsilon`` reported by DP-SGD clients)
to ``metrics.jsonl`` and, with SecAgg, hands the unmasked aggregate to the sinks as one extra update
(client id :data:`AGGREGATE_CLIENT`, the cohort's client ids in its ``defenses["cohort"]``), since the masked
individual replies carry nothing. Scoring that update against the cohort's merged ground truth is the evaluation
layer's business (``fedsim.evaluation.truth``); the server never reads ground truth.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Iterable

from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (DifferentialPrivacyClientSideFixedClipping,
                                     DifferentialPrivacyServerSideFixedClipping, Strategy)

from fedsim.config import ExperimentConfig
from fedsim.rows import PrivacyRow
from fedsim.runfolder import RunFolder
from fedsim.types import ClientUpdate
from server.strategy import CuriousStrategy

log = logging.getLogger("fedsim.server")
AGGREGATE_CLIENT = 9999


def known_defenses(cfg: ExperimentConfig) -> dict[str, Any]:
    """Every ``[defense]`` setting (public in our threat model), recorded in each ClientUpdate and attack row."""
    return dataclasses.asdict(cfg.defense)


class DefenseTap(Strategy):
    def __init__(self, curious: CuriousStrategy, cfg: ExperimentConfig, folder: RunFolder) -> None:
        self.curious = curious
        self.cfg = cfg
        self.folder = folder

    def summary(self) -> None:
        self.curious.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        return self.curious.configure_train(server_round, arrays, config, grid)

    def configure_evaluate(self, server_round, arrays, config, grid):
        return self.curious.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round, replies):
        return self.curious.aggregate_evaluate(server_round, replies)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        eps = [float(m.content["metrics"]["epsilon"]) for m in replies
               if not m.has_error() and "metrics" in m.content and "epsilon" in m.content["metrics"]]
        arrays, metrics = self.curious.aggregate_train(server_round, replies)
        if eps:
            self.folder.append(PrivacyRow(round=server_round, epsilon=max(eps), delta=self.cfg.defense.dp_sgd_delta,
                                          accountant="opacus-rdp", time=time.time()))
        if self.cfg.defense.secagg and arrays is not None and self.curious.accepted:
            try:
                self.tap_aggregate(server_round, arrays)
            except Exception as exc:  # noqa: BLE001 - never kill the federation
                log.exception("round %d: aggregate tap failed: %s", server_round, exc)
        return arrays, metrics

    def tap_aggregate(self, server_round: int, arrays: ArrayRecord) -> None:
        ups = self.curious.accepted
        total = sum(u.num_examples for u in ups)
        agg = arrays.to_torch_state_dict()
        first = ups[0]
        fedsgd = first.algorithm == "fedsgd"
        update = ClientUpdate(
            run_id=first.run_id, server_round=server_round, client_id=AGGREGATE_CLIENT, algorithm=first.algorithm,
            weights_before=dict(first.weights_before), weights_after={n: agg[n] for n in first.weights_before},
            lr=first.lr, local_epochs=first.local_epochs, local_steps=max(u.local_steps for u in ups),
            batch_size=total if fedsgd else first.batch_size, num_examples=total,
            buffers_before=dict(first.buffers_before),
            buffers_after={n: agg[n] for n in first.buffers_after if n in agg},
            defenses={**first.defenses, "aggregate_of": len(ups), "cohort": sorted(u.client_id for u in ups)})
        for sink in self.curious.sinks:
            sink(update)


def wrap_strategy(curious: CuriousStrategy, cfg: ExperimentConfig, folder: RunFolder) -> Strategy:
    strategy: Strategy = DefenseTap(curious, cfg, folder)
    d = cfg.defense
    if d.central_dp != "off":
        wrapper = (DifferentialPrivacyServerSideFixedClipping if d.central_dp == "server"
                   else DifferentialPrivacyClientSideFixedClipping)
        n = max(1, round(cfg.train.fraction_train * cfg.run.num_clients))
        strategy = wrapper(strategy, noise_multiplier=d.central_dp_noise, clipping_norm=d.central_dp_clip,
                           num_sampled_clients=n)
    return strategy
