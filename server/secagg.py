"""``[defense.secagg]`` on the server: Flower's ``SecAggPlusWorkflow`` and the legacy strategy it drives.

The only module of server/ that uses Flower's legacy strategy API (``flwr.server.strategy``, ``LegacyContext``,
``DefaultWorkflow``): the SecAgg+ workflow of flwr 1.41 exists only there. Per round the workflow runs setup ->
share keys -> collect masked vectors -> unmask; each client quantises its weighted floating-point tensors
(``num_examples / max_weight`` times the weights, stochastic rounding onto ``quantization_range`` levels in
``[-clipping_range, clipping_range]``), adds a private mask and pairwise masks modulo ``modulus_range`` and sends
only that. The server sums the masked vectors, recovers from Shamir shares the private masks of the survivors and
the pairwise masks of clients that dropped after sharing keys, and hands :class:`SecAggCuriousStrategy` the
unmasked weighted average (the same vector in every ``FitRes``) plus each client's cleartext FitRes fields, which
are only those ``fedsim.clients.secagg.CLEARTEXT_KEYS`` lists: ``num-examples``, ``partition-id`` and, under DP-SGD,
``epsilon`` (no loss, no local steps: the aggregate's steps come from the config and the claims,
:func:`aggregate_local_steps`).

What the curious server captures is exactly that aggregate: one ``ClientUpdate`` with client id
``AGGREGATE_CLIENT`` and the cohort's partition ids in ``ClientUpdate.cohort`` (the evaluation layer merges their
ground truth at scoring time). Individual updates never exist on the server, so there is nothing to validate
or capture per client; a round that cannot be unmasked (too few survivors) is written as a lost round, and an
aggregate that cannot be captured is a ``capture_error`` row. ``validation.max_weight_share`` cannot apply here:
each client weights its own vector before masking; ``defense.secagg.max_weight`` bounds a claim instead.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np
import torch
from flwr.app import ArrayRecord, Context
from flwr.common import FitIns, FitRes, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, Key
from flwr.serverapp import Grid

from fedsim.core import messages as K
from fedsim.core.config import ExperimentConfig
from fedsim.core.defense import registry as defense_registry
from fedsim.core.defense.base import RoundRelease
from fedsim.core.defense.secagg import AGGREGATE_CLIENT, secagg_plan
from fedsim.core.defense.dp_sgd import dp_sgd_steps
from fedsim.core.experiment import make_model
from fedsim.core.rows import CaptureErrorRow, LostRoundRow
from fedsim.core.runfolder import RunFolder
from fedsim.core.types import ClientUpdate
from fedsim.server.defense_wiring import known_defenses
from fedsim.server.sinks import deliver

log = logging.getLogger("fedsim.server")


class SecAggCuriousStrategy(LegacyStrategy):
    """Legacy strategy under ``SecAggPlusWorkflow``: samples the cohort, sends our train config, captures the
    unmasked aggregate and evaluates centrally. Aggregation itself is the workflow's (a weighted average)."""

    def __init__(self, cfg: ExperimentConfig, run_id: str, sinks: list, folder: RunFolder,
                 train_config: dict[str, Any], evaluate_fn: Callable[[int, ArrayRecord], Any]) -> None:
        self.cfg, self.run_id, self.sinks, self.folder = cfg, run_id, list(sinks), folder
        self.train_config, self.evaluate_fn = dict(train_config), evaluate_fn
        model = make_model(cfg)
        self.initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.param_names = [n for n, _ in model.named_parameters()]
        self.vector_names = K.secagg_vector_names(self.initial)
        self.sent: dict[str, torch.Tensor] = {}
        self.aggregated_round = 0
        self.released = 0  # rounds aggregated (local DP's rows compose over them)

    def _state(self, parameters: Parameters) -> dict[str, torch.Tensor]:
        arrays = parameters_to_ndarrays(parameters)
        return {n: torch.from_numpy(np.array(a)).to(self.initial[n].dtype) for n, a in zip(self.initial, arrays)}

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters:
        return ndarrays_to_parameters([v.numpy() for v in self.initial.values()])

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        self.sent = self._state(parameters)
        m = secagg_plan(self.cfg).cohort
        clients = client_manager.sample(num_clients=m, min_num_clients=m)
        config = {**self.train_config, K.SERVER_ROUND: server_round}
        return [(c, FitIns(parameters, config)) for c in clients]

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list) -> tuple[Parameters | None, dict]:
        if not results:
            return None, {}
        vector = parameters_to_ndarrays(results[0][1].parameters)  # the unmasked weighted average, in every FitRes
        agg = dict(self.sent)
        for name, arr in zip(self.vector_names, vector):
            agg[name] = torch.from_numpy(np.array(arr)).to(self.sent[name].dtype).reshape(self.sent[name].shape)
        self.aggregated_round = server_round
        metrics = [r.metrics for _, r in results]
        try:
            update = self.aggregate_update(server_round, agg, metrics, [r.num_examples for _, r in results])
        except Exception as exc:  # noqa: BLE001 - capture/attack must never kill the federation
            log.exception("round %d: building the secure aggregate's update failed: %s", server_round, exc)
            self.folder.append(CaptureErrorRow(round=server_round, client=AGGREGATE_CLIENT, sink="aggregate",
                                               error=f"{type(exc).__name__}: {exc}"[:500]))
        else:
            deliver(update, self.sinks, self.folder)  # a failing sink is a capture_error row
        self.released += 1
        eps = tuple(float(m[K.EPSILON]) for m in metrics if K.EPSILON in m)
        rnd = RoundRelease(server_round, self.released, aggregated=True, client_epsilons=eps)
        for row in defense_registry.privacy_rows(self.cfg, rnd):  # DP-SGD's epsilon, local DP inside each client
            self.folder.append(row)
        log.info("round %d: SecAgg+ aggregate of %d clients (%d failed)", server_round, len(results), len(failures))
        return ndarrays_to_parameters([agg[n].numpy() for n in self.initial]), {}

    def aggregate_update(self, server_round: int, agg: dict[str, torch.Tensor], metrics: list[dict],
                         counts: list[int]) -> ClientUpdate:
        """The aggregate as one update of client ``AGGREGATE_CLIENT`` covering the cohort's examples.

        One local step of the aggregate averages the cohort's batches of that step, so its batch is the cohort's
        batches together (FedSGD: every example; FedAvg: ``B * |cohort|``) and the attack's K is the cohort's
        sample visits. Its local steps: :func:`aggregate_local_steps`."""
        t = self.cfg.train
        total = sum(counts)
        params = set(self.param_names)
        ids = [m[K.PARTITION_ID] for m in metrics]
        n = self.cfg.run.num_clients  # the truth it is scored against merges these partitions' audit files
        if len(set(ids)) != len(ids) or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n
                                            for c in ids):
            raise ValueError(f"the cohort's {K.PARTITION_ID}s {ids} repeat or are not integers in [0, {n}) "
                             "(run.num_clients): the secure aggregate cannot be attributed to its clients")
        cohort = sorted(ids)
        steps = aggregate_local_steps(t.algorithm, counts, t.batch_size, t.local_epochs, t.max_local_steps)
        return ClientUpdate(
            run_id=self.run_id, server_round=server_round, client_id=AGGREGATE_CLIENT, algorithm=t.algorithm,
            weights_before={n: self.sent[n] for n in self.param_names},
            weights_after={n: agg[n] for n in self.param_names},
            buffers_before={n: v for n, v in self.sent.items() if n not in params},
            buffers_after={n: v for n, v in agg.items() if n not in params},
            lr=t.lr, local_epochs=t.local_epochs, local_steps=steps,
            batch_size=total if t.algorithm == "fedsgd" else t.batch_size * len(cohort), num_examples=total,
            defenses=known_defenses(self.cfg), cohort=tuple(cohort))

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round: int, parameters: Parameters):
        metrics = self.evaluate_fn(server_round, ArrayRecord(self._state(parameters)))
        return float(metrics["test_loss"]), dict(metrics)


def aggregate_local_steps(algorithm: str, counts: list[int], batch_size: int, epochs: int, max_steps: int) -> int:
    """The local steps of a secure aggregate, from the config and the public ``num-examples`` claims alone.

    No client sends its local steps under SecAgg+ (nothing per client travels in the clear beyond what
    ``clients/secagg.py`` lists); a client's steps are a function of its claim: FedSGD one, FedAvg
    ``epochs * ceil(n / B)`` capped by ``train.max_local_steps`` (``fedsim.core.training.step_batches``; DP-SGD takes
    the same count, ``fedsim.core.defense.dp_sgd.dp_sgd_steps``). The aggregate is the ``n``-weighted mean of the clients' deltas
    and a delta is about ``lr * steps * g``, so the fake gradient ``delta / (steps * lr)`` is consistent with the
    cohort's mean gradient for the ``n``-weighted mean of the steps (rounded, at least one); with unequal steps no
    single value is exact. (The cohort's *max*, used before, understated the gradient.)
    """
    if algorithm == "fedsgd" or not counts:
        return 1
    steps = [dp_sgd_steps(n, algorithm, batch_size, epochs, max_steps)[1] for n in counts]
    return max(1, round(sum(n * k for n, k in zip(counts, steps)) / sum(counts)))


class LostRoundGuard:
    """The fit workflow (SecAgg+) of one round; a round it halts without an aggregate is written as lost."""

    def __init__(self, workflow: SecAggPlusWorkflow, strategy: SecAggCuriousStrategy, folder: RunFolder) -> None:
        self.workflow, self.strategy, self.folder = workflow, strategy, folder

    def __call__(self, grid: Grid, context: Context) -> None:
        server_round = int(context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])
        self.workflow(grid, context)
        if self.strategy.aggregated_round != server_round:
            log.error("round %d lost: secure aggregation halted before unmasking", server_round)
            self.folder.append(LostRoundRow(round=server_round, reason="SecAgg+ halted: fewer clients than "
                                            "defense.secagg.reconstruction_threshold survived", time=time.time()))


def run_secagg(grid: Grid, context: Context, cfg: ExperimentConfig, *, run_id: str, sinks: list,
               folder: RunFolder, train_config: dict[str, Any], evaluate_fn) -> None:
    """Run every round with Flower's ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))``."""
    s, plan = cfg.defense.secagg, secagg_plan(cfg)
    strategy = SecAggCuriousStrategy(cfg, run_id, sinks, folder, train_config, evaluate_fn)
    legacy = LegacyContext(context=context, strategy=strategy,
                           config=ServerConfig(num_rounds=cfg.run.num_rounds, round_timeout=cfg.run.round_timeout))
    secagg = SecAggPlusWorkflow(num_shares=plan.num_shares, reconstruction_threshold=plan.threshold,
                                max_weight=plan.max_weight, clipping_range=s.clipping_range,
                                quantization_range=s.quantization_range, modulus_range=s.modulus_range,
                                timeout=cfg.run.round_timeout)
    log.info("SecAgg+: cohort %d, %d shares, threshold %d, max weight %g", plan.cohort, plan.num_shares,
             plan.threshold, plan.max_weight)
    DefaultWorkflow(fit_workflow=LostRoundGuard(secagg, strategy, folder))(grid, legacy)
