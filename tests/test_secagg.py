"""Flower's SecAgg+ end to end, in process: the real ``SecAggPlusWorkflow`` (server/secagg.py) drives our ClientApp
(``secaggplus_mod`` + the legacy fit contract + train()) through a loopback Grid, one Flower ``Context`` per node.

A client that drops after sharing its keys (``faults.dropout``: it raises when asked for its masked vector) is
recovered from the survivors' Shamir shares; the server receives no individual weights at all, captures exactly
one update per round (the aggregate, with its cohort), and that aggregate equals FedAvg of the surviving clients'
own updates within SecAgg+'s quantisation step.
"""

import copy
from types import SimpleNamespace

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType

import fedsim.clients.app as client_app
from fedsim.core import messages as K
from fedsim.core.config import ConfigError, ExperimentConfig
from fedsim.core.experiment import make_model
from fedsim.core.rows import LostRoundRow
from fedsim.core.runfolder import RunFolder
from fedsim.server.app import central_evaluation, train_config
from fedsim.core.defense.secagg import AGGREGATE_CLIENT
from fedsim.server.secagg import run_secagg

NODE_IDS = [1101, 2202, 3303, 4404]  # random-looking node ids; partition ids are 0..3


@pytest.fixture(autouse=True)
def _serverapp_identity(monkeypatch):
    """What Flower's ServerApp process sets before a workflow creates messages (run, node and task ids)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 7), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


class LoopbackGrid:
    """Each message goes to the ClientApp of its node (a SuperNode's persistent Context); an exception becomes an
    error reply, as in Flower's runtime. Keeps every reply the server received."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.run = SimpleNamespace(run_id=7)
        self.contexts = {nid: Context(run_id=7, node_id=nid, state=RecordDict(), run_config=cfg.to_flat(),
                                      node_config={K.PARTITION_ID: pid, K.NUM_PARTITIONS: len(NODE_IDS)})
                         for pid, nid in enumerate(NODE_IDS)}
        self.received: list[Message] = []

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for msg in messages:
            msg = copy.deepcopy(msg)  # a real Grid serialises: nodes never share the server's record objects
            try:
                replies.append(client_app.app(msg, self.contexts[msg.metadata.dst_node_id]))
            except Exception as exc:  # noqa: BLE001 - the node reports an error, like a real ClientApp
                replies.append(Message(Error(code=0, reason=str(exc)), reply_to=msg))
        self.received += replies
        return replies


def _cfg(tmp_path, **extra):
    return ExperimentConfig().replace(**{
        "run.out_dir": str(tmp_path), "run.num_clients": 4, "run.num_rounds": 1, "data.partition": "iid",
        "model.width": 4, "train.algorithm": "fedsgd", "train.batch_size": 8, "train.min_train_nodes": 4,
        "train.lr": 0.1, "defense.secagg.enabled": True, "faults.enabled": True, "faults.dropout": "3:1",
        **extra})


def _plain_update(cfg, sent, pid):
    """What client ``pid`` trains in round 1 without SecAgg+ (same Message-API train function)."""
    conf = {**dict(train_config(cfg)), K.SERVER_ROUND: 1}
    msg = Message(RecordDict({K.ARRAYS: ArrayRecord(sent), K.CONFIG: ConfigRecord(conf)}),
                  dst_node_id=NODE_IDS[pid], message_type=MessageType.TRAIN)
    ctx = Context(run_id=7, node_id=NODE_IDS[pid], state=RecordDict(), run_config=cfg.to_flat(),
                  node_config={K.PARTITION_ID: pid, K.NUM_PARTITIONS: cfg.run.num_clients})
    reply = client_app.train(msg, ctx)
    return reply.content[K.ARRAYS].to_torch_state_dict(), int(reply.content[K.METRICS][K.NUM_EXAMPLES])


def run_loopback_secagg(tmp_path):
    """Flower's SecAgg+ workflow over the loopback grid with the in-process ClientApps: (cfg, folder, grid,
    captured updates)."""
    cfg = _cfg(tmp_path)
    folder = RunFolder(tmp_path)
    grid, captured = LoopbackGrid(cfg), []
    server_ctx = Context(run_id=7, node_id=0, node_config={}, state=RecordDict(), run_config=cfg.to_flat())
    run_secagg(grid, server_ctx, cfg, run_id="7", sinks=[captured.append], folder=folder,
               train_config=dict(train_config(cfg)), evaluate_fn=central_evaluation(cfg, folder))
    return cfg, folder, grid, captured


def test_secaggplus_recovers_a_dropout_and_reveals_only_the_aggregate(tmp_path):
    cfg, folder, grid, captured = run_loopback_secagg(tmp_path)

    # the server never received weights: every reply's ArrayRecords are empty (only masked integer vectors)
    assert grid.received and all(len(r.content.array_records[k]) == 0 for r in grid.received if r.has_content()
                                 for k in r.content.array_records)
    assert sum(r.has_error() for r in grid.received) == 1  # client 3 dropped after sharing its keys
    assert not list(folder.rows(LostRoundRow))
    assert [u.client_id for u in captured] == [AGGREGATE_CLIENT]
    agg = captured[0]
    assert agg.cohort == (0, 1, 2) and "cohort" not in agg.defenses and agg.num_examples == 24 and agg.batch_size == 24

    sent = make_model(cfg).state_dict()
    plain = [_plain_update(cfg, sent, pid) for pid in range(3)]
    total = sum(n for _, n in plain)
    s = cfg.defense.secagg
    step = 2 * s.clipping_range / s.quantization_range  # one quantisation level (weights at max_weight = B)
    for name in agg.weights_before:
        fedavg = sum(n * w[name].double() for w, n in plain) / total
        err = float((agg.weights_after[name].double() - fedavg).abs().max())
        assert err <= 2 * step, (name, err, step)
    # and the dropped client's pairwise masks are really gone: the aggregate moved by a real (small) update
    delta = max(float((agg.weights_after[n] - sent[n]).abs().max()) for n in agg.weights_before)
    assert 100 * step < delta < 1.0


def test_secaggplus_round_is_lost_when_too_few_survive(tmp_path, monkeypatch):
    """With threshold 4 (more than the config check would let through) the dropout leaves 3 of 4: no unmasking,
    no capture, and the round is written as lost instead of passing in silence."""
    from dataclasses import replace

    import fedsim.server.secagg as S

    cfg = _cfg(tmp_path)
    plan = replace(S.secagg_plan(cfg), num_shares=5, threshold=4)
    monkeypatch.setattr(S, "secagg_plan", lambda c: plan)
    folder = RunFolder(tmp_path)
    captured = []
    server_ctx = Context(run_id=7, node_id=0, node_config={}, state=RecordDict(), run_config=cfg.to_flat())
    run_secagg(LoopbackGrid(cfg), server_ctx, cfg, run_id="7", sinks=[captured.append], folder=folder,
               train_config=dict(train_config(cfg)), evaluate_fn=central_evaluation(cfg, folder))
    assert captured == []
    lost = list(folder.rows(LostRoundRow))
    assert [r.round for r in lost] == [1] and "SecAgg+" in lost[0].reason


@pytest.mark.parametrize("extra, fragment", [
    ({"defense.central_dp.clipping": "server"}, "defense.secagg.enabled: cannot be combined with defense.central_dp"),
    ({"faults.corrupt": "1:nan"}, "faults.corrupt: SecAgg+ hides individual updates"),
    ({"faults.dropout": "1:1,2:1,3:1"}, "faults.dropout: only 1 of 4 clients remain in round 1, below"),
    ({"defense.secagg.reconstruction_threshold": 4}, "defense.secagg.reconstruction_threshold: 4 must be below"),
    ({"defense.secagg.num_shares": 2}, "defense.secagg.num_shares: 2 is below 3"),
    ({"defense.secagg.modulus_range": 3 * 2**22}, "defense.secagg.modulus_range"),
])
def test_secagg_refuses_what_it_cannot_honour(tmp_path, extra, fragment):
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path, **extra)
    assert fragment in str(err.value) and "\n" not in str(err.value)


# ---- real runtimes: Ray simulation and SuperLink + SuperNodes ---------------------------------------------
SECAGG_RUN = ["--set", "defense.secagg.enabled=true", "--set", "faults.enabled=true", "--set", "attack.inversion=none",
              "--set", "attack.label_methods=ilrg"]


def _check_secagg_run(out, tmp_path, monkeypatch, cohorts):
    """The last client of round 1 drops after sharing keys and is recovered; only aggregates are captured,
    attacked and scored against their cohort; round 1's aggregate is FedAvg of the survivors within quantisation."""
    from fedsim.core.captures import iter_captures, load_update
    from fedsim.core.config import load_config
    from fedsim.core.results import read_jsonl
    from tests.processes import processes_under

    rows = list(read_jsonl(out / "metrics.jsonl"))
    acc = [r["test_accuracy"] for r in sorted((r for r in rows if r["kind"] == "utility"), key=lambda r: r["round"])]
    assert len(acc) == len(cohorts) + 1 and acc[0] < acc[-1] and not [r for r in rows if r["kind"] == "lost_round"]
    updates = sorted((load_update(p) for p in iter_captures(out)), key=lambda u: u.server_round)
    assert [(u.server_round, u.client_id) for u in updates] == [(r, AGGREGATE_CLIENT) for r in range(1, len(cohorts) + 1)]
    assert [list(u.cohort) for u in updates] == cohorts
    labels = [r for r in rows if r["kind"] == "label"]
    assert [(r["round"], r["client"], r["num_samples"]) for r in labels] == [
        (r, AGGREGATE_CLIENT, 64 * len(c)) for r, c in enumerate(cohorts, 1)]  # smoke: 64 examples per client
    assert all(sum(r["true_counts"]) == r["num_samples"] and r["label_instacc"] > 0.5 for r in labels)
    assert len(list((out / "audit").rglob("*.safetensors"))) == sum(map(len, cohorts))  # clients trained
    cfg = load_config(out / "config.toml")
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 7), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)
    sent = {**updates[0].weights_before, **updates[0].buffers_before}
    replay = cfg.replace(**{"run.out_dir": str(tmp_path / "replay")})
    plain = [_plain_update(replay, sent, pid) for pid in cohorts[0]]
    step = 2 * cfg.defense.secagg.clipping_range / cfg.defense.secagg.quantization_range
    for name in updates[0].weights_before:
        fedavg = sum(n * w[name].double() for w, n in plain) / sum(n for _, n in plain)
        assert float((updates[0].weights_after[name].double() - fedavg).abs().max()) <= 2 * step, name
    assert processes_under(tmp_path) == []


def _fedsim(*args):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-m", "fedsim.lab.cli", args[0], str(root / "configs" / "smoke.toml"),
                           *args[1:], "--quiet", *SECAGG_RUN], capture_output=True, text=True, timeout=540, cwd=root)


@pytest.mark.slow
def test_secaggplus_in_the_ray_simulation(tmp_path, monkeypatch):
    """4 clients, 2 rounds: client 3 drops in round 1 and is back (re-keyed) in round 2."""
    out = tmp_path / "secagg"
    proc = _fedsim("run", "--out", str(out), "--set", "run.num_clients=4", "--set", "train.min_train_nodes=4",
                   "--set", "faults.dropout=3:1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    _check_secagg_run(out, tmp_path, monkeypatch, [[0, 1, 2], [0, 1, 2, 3]])


@pytest.mark.deployment
@pytest.mark.slow
def test_secaggplus_in_deploy_local(tmp_path, monkeypatch):
    """SuperLink + 3 SuperNodes, 1 round (every SecAgg+ stage is a message to each node): node 2 drops."""
    out = tmp_path / "secagg"
    proc = _fedsim("deploy-local", "--nodes", "3", "--out", str(out), "--set", "run.num_rounds=1",
                   "--set", "faults.dropout=2:1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    _check_secagg_run(out, tmp_path, monkeypatch, [[0, 1]])


def test_only_the_secagg_modules_use_flowers_legacy_api():
    """Flower's legacy strategy API (``flwr.server``, ``flwr.compat``, ``flwr.client``, ``flwr.common`` Parameters)
    is what SecAgg+ needs; it stays in server/secagg.py and clients/secagg.py."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    legacy = ("flwr.server", "flwr.compat", "flwr.client", "flwr.common")
    offenders = []
    for path in [*(root / "server").glob("*.py"), *(root / "clients").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            hits = [n for n in names if any(n == m or n.startswith(m + ".") for m in legacy)]
            if hits and path.name != "secagg.py":
                offenders.append(f"{path.relative_to(root)}: {hits}")
    assert not offenders, offenders


def test_a_weight_outside_the_clipping_range_fails_the_client_not_the_aggregate():
    from fedsim.clients.secagg import to_fitres

    content = RecordDict({K.ARRAYS: ArrayRecord({"w": torch.tensor([0.5, -9.0])}),
                          K.METRICS: MetricRecord({K.NUM_EXAMPLES: 8}), K.META: ConfigRecord({K.LOCAL_STEPS: 1})})
    assert to_fitres(content, max_weight=8.0, clipping_range=10.0)  # inside the range: a FitRes record dict
    with pytest.raises(ValueError, match="defense.secagg.clipping_range"):
        to_fitres(content, max_weight=8.0, clipping_range=8.0)
    with pytest.raises(ValueError, match="defense.secagg.max_weight"):
        to_fitres(content, max_weight=4.0, clipping_range=100.0)
