"""fedsim's ClientApp (Flower Message API).

Receives the global weights and a train config (algorithm, lr, local epochs, batch size, seed, round),
trains with plain SGD on its partition and replies with its weights, metrics (``num-examples`` weights the
average) and a ConfigRecord of identifiers (kept out of the averaged MetricRecord). What it trained on goes to
the audit folder, never into the reply.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsim.audit import write_ground_truth
from fedsim.config import from_flat
from fedsim.experiment import client_data, local_seed, make_model, run_dir
from fedsim.training import evaluate
from clients.dp import defense_mod, train_defended
from clients import faults

app = ClientApp(mods=[defense_mod])  # runs Flower's LocalDpMod / fixedclipping_mod and SecAgg masks when on


def _partition(context: Context) -> tuple[int, int]:
    try:
        return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    except KeyError as exc:
        raise KeyError(f"node_config lacks {exc}: start the SuperNode with "
                       f"--node-config 'partition-id=<i> num-partitions=<n>'") from None


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = from_flat(context.run_config)
    pid, num_parts = _partition(context)
    conf = msg.content["config"]
    faults.before_training(cfg, pid, int(conf["server-round"]))  # [faults]: dropout (raises) / straggle
    model = make_model(cfg)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = client_data(cfg, pid, num_parts)
    seed = local_seed(int(conf["seed"]), int(conf["server-round"]), pid)
    torch.manual_seed(seed)
    result, state, privacy = train_defended(  # defenses of [defense] (clients/dp.py); all off = plain SGD
        cfg.defense, model, x, y, algorithm=str(conf["algorithm"]), lr=float(conf["lr"]),
        epochs=int(conf["local-epochs"]), batch_size=int(conf["batch-size"]), seed=seed,
        server_round=int(conf["server-round"]), client_id=pid, max_steps=int(conf["max-local-steps"]))
    write_ground_truth(run_dir(cfg), result.ground_truth)
    used = sum(len(b) for b in result.ground_truth.labels) if conf["algorithm"] == "fedsgd" else len(y)
    used = max(1, used)  # DP-SGD's Poisson batch may be empty
    metrics = {"train_loss": result.mean_loss, "num-examples": used, **privacy}
    state, metrics, _ = faults.corrupt(cfg, pid, int(conf["server-round"]), state,  # [faults]: corrupt reply
                                       msg.content["arrays"].to_torch_state_dict(), metrics)
    content = RecordDict({
        "arrays": ArrayRecord(state),
        "metrics": MetricRecord(metrics),
        "meta": ConfigRecord({"partition-id": pid, "local-steps": result.steps}),
    })
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_local(msg: Message, context: Context) -> Message:
    """Client-side evaluation of the global model on the client's own partition."""
    cfg = from_flat(context.run_config)
    pid, num_parts = _partition(context)
    model = make_model(cfg)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    x, y = client_data(cfg, pid, num_parts)
    acc, loss = evaluate(model, x, y)
    content = RecordDict({"metrics": MetricRecord({"eval_acc": acc, "eval_loss": loss, "num-examples": len(y)})})
    return Message(content=content, reply_to=msg)
