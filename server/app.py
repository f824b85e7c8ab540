"""fedsim's ServerApp (Flower Message API): FedAvg wrapped by the curious strategy, central evaluation."""

from __future__ import annotations

import logging
import time

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedsim.core import messages as K
from fedsim.core.defense import registry as defense_registry
from fedsim.core.config import ExperimentConfig, to_toml
from fedsim.core.resolved import fingerprint
from fedsim.core.defense.base import WORKFLOW, resolve
from fedsim.core.capture_plan import capture_text  # capture.* = 'attacked': the attack selection
from fedsim.evaluation.resolution import for_server
from fedsim.core.experiment import HELDOUT, device, make_model, test_data
from fedsim.core.paths import run_dir
from fedsim.core.rows import UtilityRow
from fedsim.core.runfolder import RunFolder
from fedsim.core.training import evaluate
from fedsim.server.attack_hook import build_attack_hook
from fedsim.server.defense_wiring import known_defenses, weighting_key, wrap_strategy
from fedsim.server.secagg import run_secagg
from fedsim.server.sinks import CaptureWriter
from fedsim.server.strategy import CuriousStrategy
from fedsim.server.validation import Bounds, ReplyGate, ReplyScreen, TrainSettings

log = logging.getLogger("fedsim.server")
app = ServerApp()

#: server-workflow appliers by name (``Applier(WORKFLOW, name)``): a defense that drives the rounds itself
#: instead of the Message-API strategy stack; called like :func:`fedsim.server.secagg.run_secagg`
WORKFLOWS = {"secagg": run_secagg}


def workflow_for(cfg: ExperimentConfig):
    """The workflow of the defense in force that has one (SecAgg+), else None (the strategy stack)."""
    found = defense_registry.appliers(cfg.defense, WORKFLOW)
    return resolve(found[0][2].name, WORKFLOWS, "server workflow") if found else None


def train_config(cfg: ExperimentConfig) -> ConfigRecord:
    """What a client trains with, and the fingerprint of the checked config (``fedsim.core.resolved``): a client
    whose run config has it takes it as checked."""
    t = cfg.train
    return ConfigRecord({K.ALGORITHM: t.algorithm, K.LR: t.lr, K.LOCAL_EPOCHS: t.local_epochs,
                         K.BATCH_SIZE: t.batch_size, K.MAX_LOCAL_STEPS: t.max_local_steps, K.SEED: cfg.run.seed,
                         K.RESOLVED: fingerprint(cfg)})


def central_evaluation(cfg: ExperimentConfig, folder: RunFolder):
    """``evaluate_fn`` for ``Strategy.start``: test accuracy/loss of the global model, one JSON row per round."""
    model = make_model(cfg).to(device(cfg))
    x, y = test_data(cfg)

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())  # copied onto the model's device
        acc, loss = evaluate(model, x, y)
        heldout, _ = evaluate(model, x[HELDOUT], y[HELDOUT])
        folder.append(UtilityRow(round=server_round, test_accuracy=acc, test_loss=loss, time=time.time(),
                                 heldout_accuracy=heldout))
        return MetricRecord({"test_accuracy": acc, "test_loss": loss, "heldout_accuracy": heldout})

    return evaluate_fn


def screen_for(cfg: ExperimentConfig, run_id: str, parameter_names: list[str]) -> ReplyScreen:
    """The reply screen with the bounds of ``[validation]`` and what the server configured."""
    t, v = cfg.train, cfg.validation
    max_claim = t.batch_size if t.algorithm == "fedsgd" else None  # DP-SGD clients too release min(B, n)
    settings = TrainSettings(t.algorithm, t.lr, t.local_epochs, t.batch_size, defenses=known_defenses(cfg),
                             max_claim=max_claim)
    bounds = Bounds(max_num_examples=v.max_num_examples, examples_ratio=v.examples_ratio, norm_ratio=v.norm_ratio,
                    max_update_norm=v.max_update_norm, history=v.history, max_weight_share=v.max_weight_share)
    return ReplyScreen(parameter_names, settings, run_id, RunFolder(run_dir(cfg)), bounds,
                       num_clients=cfg.run.num_clients)  # partition ids in [0, run.num_clients)


def build_strategy(cfg: ExperimentConfig, run_id: str, sinks) -> ReplyGate:
    """``ReplyGate -> [Flower central-DP wrapper] -> DefenseTap -> CuriousStrategy -> FedAvg``."""
    model = make_model(cfg)
    inner = FedAvg(fraction_train=cfg.train.fraction_train, fraction_evaluate=0.0,
                   min_train_nodes=cfg.train.min_train_nodes, min_available_nodes=cfg.train.min_train_nodes,
                   weighted_by_key=weighting_key(cfg))
    screen = screen_for(cfg, run_id, [n for n, _ in model.named_parameters()])
    curious = CuriousStrategy(inner, run_id=run_id, parameter_names=screen.parameter_names,
                              settings=screen.settings, sinks=sinks, run_folder=screen.folder, screen=screen)
    return ReplyGate(wrap_strategy(curious, cfg, screen.folder), screen)


@app.main()
def main(grid: Grid, context: Context) -> None:
    # the run as the lab resolved it (resolved.json: no check, no plan built); under a bare `flwr run .` checked
    # and resolved here, as fedsim's preflight would: a typo fails before round 1
    resolved = for_server(context.run_config)
    cfg = resolved.config
    out = run_dir(cfg)  # absolute: the one folder of the ServerApp and every ClientApp (fedsim.core.experiment)
    folder = RunFolder(out)
    # owned: the lab entry points prepared (marked) it already; a new or empty folder (bare `flwr run .`) is
    # marked here, before any client writes (clients write audit/ only when a train message reaches them);
    # a non-empty folder without the mark raises RunFolderError, nothing touched
    folder.claim()
    folder.config.write_text(to_toml(cfg))
    resolved.save(folder.resolved)
    nodes = list(grid.get_node_ids())
    if nodes and len(nodes) != cfg.run.num_clients:
        log.warning("run.num_clients=%d but %d SuperNodes are connected", cfg.run.num_clients, len(nodes))
    sinks = []
    if cfg.capture.enabled:
        sinks.append(CaptureWriter(out, capture_text(cfg, "rounds"), capture_text(cfg, "clients")))
    hook = build_attack_hook(cfg, out, resolved)
    if hook is not None:
        sinks.append(hook)
    strategy = build_strategy(cfg, str(context.run_id), sinks)
    model = make_model(cfg)
    workflow = workflow_for(cfg)
    try:
        if workflow is not None:  # SecAgg+: Flower's SecAgg+ workflow drives its own (legacy) strategy
            workflow(grid, context, cfg, run_id=str(context.run_id), sinks=sinks, folder=folder,
                     train_config=dict(train_config(cfg)), evaluate_fn=central_evaluation(cfg, folder))
        else:
            strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                           num_rounds=cfg.run.num_rounds, timeout=cfg.run.round_timeout,
                           train_config=train_config(cfg), evaluate_fn=central_evaluation(cfg, folder))
    finally:
        if hook is not None:
            hook.close()
    folder.done.write_text("ok\n")
