"""fedsim's ClientApp (Flower Message API).

Receives the global weights and a train config (algorithm, lr, local epochs, batch size, seed, round),
trains with plain SGD on its partition and replies with its weights, metrics (``num-examples`` weights the
average) and a ConfigRecord of identifiers (kept out of the averaged MetricRecord). What it trained on goes to
the audit folder (only for the updates that are captured, so scored: ``fedsim.core.capture_plan.audited``), never
into the reply. ``train_loss`` (the mean loss on the private batches) is sent only when
no DP mechanism and no SecAgg+ is on (:func:`releases_train_loss`): no epsilon covers it. Defenses: training
hooks here (``fedsim.core.defense.registry.train_defended``), everything that acts on messages in the one list of mods
(``fedsim.clients.mods``). Message keys: ``fedsim.core.messages``.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedsim.core import messages as K
from fedsim.core.defense import registry as defense_registry
from fedsim.core.audit import write_ground_truth
from fedsim.core.capture_plan import audited
from fedsim.core.defense.dp_sgd import released_examples
from fedsim.core.experiment import client_data, device, local_seed, make_model
from fedsim.core.paths import run_dir
from fedsim.core.training import evaluate
from fedsim.clients.message_config import config_of
from fedsim.clients.mods import defense_mods
from fedsim.clients import faults

app = ClientApp(mods=[defense_mods])  # SecAgg+, LocalDpMod, fixedclipping_mod, update defenses when on


def releases_train_loss(d) -> bool:
    """Whether the reply carries ``train_loss``: not when a defense in force hides it (``hides_train_loss``: a
    statistic of the private batches that no DP epsilon covers, DP-SGD, local DP, central DP, and that SecAgg+
    would carry per client in the clear); otherwise it is sent."""
    return not defense_registry.hides_train_loss(d)


def _partition(context: Context) -> tuple[int, int]:
    try:
        return int(context.node_config[K.PARTITION_ID]), int(context.node_config[K.NUM_PARTITIONS])
    except KeyError as exc:
        raise KeyError(f"node_config lacks {exc}: start the SuperNode with "
                       f"--node-config 'partition-id=<i> num-partitions=<n>'") from None


@app.train()
def train(msg: Message, context: Context) -> Message:
    cfg = config_of(context)  # parsed once per message by the outermost mod (fedsim.clients.message_config)
    pid, num_parts = _partition(context)
    conf = msg.content[K.CONFIG]
    server_round, algorithm = int(conf[K.SERVER_ROUND]), str(conf[K.ALGORITHM])
    faults.before_training(cfg, pid, server_round)  # [faults]: dropout (raises) / straggle
    model = make_model(cfg).to(device(cfg))  # run.device; load_state_dict copies onto it
    model.load_state_dict(msg.content[K.ARRAYS].to_torch_state_dict())
    x, y = client_data(cfg, pid, num_parts)
    seed = local_seed(int(conf[K.SEED]), server_round, pid)
    torch.manual_seed(seed)
    # the training hooks of the defenses in force (DP-SGD, smoothing/mixup), resolved and called; off = plain SGD
    result, privacy = defense_registry.train_defended(
        cfg.defense, model, x, y, algorithm=algorithm, lr=float(conf[K.LR]), epochs=int(conf[K.LOCAL_EPOCHS]),
        batch_size=int(conf[K.BATCH_SIZE]), seed=seed, server_round=server_round, client_id=pid,
        max_steps=int(conf[K.MAX_LOCAL_STEPS]))
    if audited(cfg, server_round, pid, defense_registry.aggregate_only(cfg.defense)):  # only what can be scored
        write_ground_truth(run_dir(cfg), result.ground_truth)
    # what the client releases: min(B, n) for FedSGD, n for FedAvg; never DP-SGD's realised Poisson batch sizes
    used = released_examples(algorithm, len(y), int(conf[K.BATCH_SIZE]))
    metrics = {K.NUM_EXAMPLES: used, **privacy}
    if releases_train_loss(cfg.defense):
        metrics[K.TRAIN_LOSS] = result.mean_loss
    trained = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # the reply lives on the CPU
    state, metrics, _ = faults.corrupt(cfg, pid, server_round, trained,  # [faults]: corrupt reply
                                       msg.content[K.ARRAYS].to_torch_state_dict(), metrics)
    content = RecordDict({
        K.ARRAYS: ArrayRecord(state),
        K.METRICS: MetricRecord(metrics),
        K.META: ConfigRecord({K.PARTITION_ID: pid, K.LOCAL_STEPS: result.steps}),
    })
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_local(msg: Message, context: Context) -> Message:
    """Client-side evaluation of the global model on the client's own partition."""
    cfg = config_of(context)
    pid, num_parts = _partition(context)
    model = make_model(cfg).to(device(cfg))
    model.load_state_dict(msg.content[K.ARRAYS].to_torch_state_dict())
    x, y = client_data(cfg, pid, num_parts)
    acc, loss = evaluate(model, x, y)
    content = RecordDict({K.METRICS: MetricRecord({"eval_acc": acc, "eval_loss": loss, K.NUM_EXAMPLES: len(y)})})
    return Message(content=content, reply_to=msg)
