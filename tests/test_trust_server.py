"""Issue 21 (defects 3, 4 and part of 10), server side, with in-process replies (no Ray):

- one client cannot take over the aggregate: no reply carries more than ``validation.max_weight_share`` of
  FedAvg's weight, and a legitimate unequal round (Dirichlet partition sizes) is aggregated exactly as before;
- no release outside the accounting: under DP-SGD the reply holds no ``train_loss``; under SecAgg+ the cleartext
  of a reply holds only ``fedsim.clients.secagg.CLEARTEXT_KEYS``; the secure aggregate's local steps come from the config;
- failures that were only logged are rows: a capture that cannot be written (``capture_error``), an attack that
  cannot be scheduled (``attack_error``), a reply a wrapper left invalid (a rejection), and the report shows them.
"""

from __future__ import annotations

import math
import random
from unittest.mock import Mock

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.serverapp.strategy import FedAvg

from fedsim.core import messages as K
from fedsim.core.config import ExperimentConfig
from fedsim.core.models import build_model
from fedsim.core.rows import AttackErrorRow, CaptureErrorRow, LostRoundRow, RejectionRow
from fedsim.core.runfolder import RunFolder
from fedsim.server.sinks import CaptureWriter
from fedsim.server.strategy import CuriousStrategy
from fedsim.server.validation import Bounds, ReplyGate, ReplyScreen, TrainSettings, capped_claims
from fedsim.server.wrapping import StrategyWrapper
from tests.test_faults import _honest, _reply

DIRICHLET_SIZES = [58, 424, 110, 97, 292]  # five partitions of configs/fedavg_dirichlet.toml (largest share 0.43)


@pytest.fixture
def serverapp_identity(monkeypatch):
    """What Flower's ServerApp process sets before a workflow creates messages (as in tests/test_secagg.py)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 7), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def _stack(tmp_path, *, bounds: Bounds = Bounds(), sinks=None, between=None):
    """ReplyGate -> [between] -> CuriousStrategy -> FedAvg (the live stack without central DP); records what FedAvg
    is handed."""
    model = build_model("convnet", (1, 8, 8), 3, seed=0, width=2)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    folder = RunFolder(tmp_path)
    screen = ReplyScreen(names, TrainSettings("fedavg", 0.1, 1, 4, {}), "r", folder, bounds)
    captured: list = []
    inner = FedAvg(fraction_evaluate=0.0)
    inner.configure_train = Mock(return_value=[])
    handed: list[list[Message]] = []
    aggregate = inner.aggregate_train

    def spy(server_round, replies):
        replies = list(replies)
        handed.append(replies)
        return aggregate(server_round, replies)

    inner.aggregate_train = spy
    curious = CuriousStrategy(inner, run_id="r", parameter_names=names, settings=screen.settings,
                              sinks=[captured.append] if sinks is None else sinks, run_folder=folder, screen=screen)
    gate = ReplyGate(between(curious) if between else curious, screen)
    return gate, sent, captured, folder, handed


def _round(gate, sent, claims, rnd=1):
    list(gate.configure_train(rnd, ArrayRecord(sent), ConfigRecord({}), Mock()))
    replies = [_reply(_honest(sent, 10 * rnd + c, scale=0.01), {K.NUM_EXAMPLES: n}, c) for c, n in enumerate(claims)]
    return replies, gate.aggregate_train(rnd, replies)


def _fedavg_weights(replies: list[Message]) -> list[float]:
    """FedAvg's weights: each reply's ``num-examples`` over their sum (``weighted_by_key`` default)."""
    claims = [float(m.content[K.METRICS][K.NUM_EXAMPLES]) for m in replies]
    return [c / sum(claims) for c in claims]


# ---- defect 3: bounded influence -------------------------------------------------------------------------
def test_capped_claims_known_answers():
    assert capped_claims([50, 5000], 0.5) == [50, 50]
    assert capped_claims([5000, 50, 50], 0.6) == [150, 50, 50]  # 150 / 250 = 0.6 exactly
    assert capped_claims([5, 7, 100], 0.1) == [5, 5, 5]  # 3 replies: 1/3 is the tightest bound
    assert capped_claims(DIRICHLET_SIZES, 0.5) == DIRICHLET_SIZES  # a legitimate spread is not touched
    assert capped_claims([50, 5000], 1.0) == [50, 5000] and capped_claims([7], 0.5) == [7]


def test_capped_claims_keep_every_share_within_the_bound():
    rng = random.Random(0)
    for _ in range(2000):
        claims = [rng.choice([1, 2, 10, 50, 64, 5000, 10**6]) + rng.randrange(5) for _ in range(rng.randint(2, 8))]
        share = rng.choice([0.05, 0.2, 0.3, 0.5, 0.75, 0.99])
        out = capped_claims(claims, share)
        bound = max(share, 1 / len(claims))
        assert all(1 <= o <= c for o, c in zip(out, claims)), (claims, share, out)
        assert max(out) / sum(out) <= bound + 1e-12, (claims, share, out)
        if max(claims) / sum(claims) <= bound:
            assert out == claims
        else:  # only the largest are lowered, to one common weight, and no lower than needed
            top = max(out)
            assert all(o == c for o, c in zip(out, claims) if c < top)
            higher = [min(c, top + 1) for c in claims]  # one more would break the bound
            assert max(higher) / sum(higher) > bound, (claims, share, out)


def test_one_client_cannot_take_over_a_two_node_round(tmp_path):
    """Claims 50 and 5000 (within examples_ratio = 100): FedAvg gave the 5000-claim 0.99 of the weight; now at
    most the 0.5 bound, with a 'capped' row; the capture still holds the claim the server received."""
    gate, sent, captured, folder, handed = _stack(tmp_path)
    replies, (arrays, _) = _round(gate, sent, [50, 5000])
    assert arrays is not None and len(handed[-1]) == 2  # nothing rejected: both updates count
    weights = _fedavg_weights(handed[-1])
    assert max(weights) <= Bounds().max_weight_share == 0.5
    honest = [_honest(sent, 10 + c, scale=0.01) for c in range(2)]
    agg = arrays.to_torch_state_dict()
    for name, value in agg.items():
        if value.is_floating_point():
            assert torch.allclose(value, (honest[0][name] + honest[1][name]) / 2, atol=1e-6), name
    rows = folder.rejection_rows()
    assert [(r.client, r.action) for r in rows] == [(1, "capped")]
    assert "num-examples=5000 weighted as 50" in rows[0].reason and "validation.max_weight_share=0.5" in rows[0].reason
    assert sorted(u.num_examples for u in captured) == [50, 5000]


def test_the_bound_is_configurable_and_one_means_off(tmp_path):
    gate, sent, _, folder, handed = _stack(tmp_path / "a", bounds=Bounds(max_weight_share=1.0))
    _round(gate, sent, [50, 5000])
    assert _fedavg_weights(handed[-1])[1] == pytest.approx(5000 / 5050) and not folder.rejection_rows()
    gate, sent, _, folder, handed = _stack(tmp_path / "b", bounds=Bounds(max_weight_share=0.75))
    _round(gate, sent, [50, 5000])
    assert _fedavg_weights(handed[-1])[1] == pytest.approx(0.75)


def test_a_legitimate_unequal_round_is_aggregated_exactly_as_before(tmp_path):
    gate, sent, _, folder, handed = _stack(tmp_path)
    replies, (arrays, _) = _round(gate, sent, DIRICHLET_SIZES)
    assert not folder.rejection_rows()
    assert _fedavg_weights(handed[-1]) == [n / sum(DIRICHLET_SIZES) for n in DIRICHLET_SIZES]
    fresh = [_reply(_honest(sent, 10 + c, scale=0.01), {K.NUM_EXAMPLES: n}, c) for c, n in enumerate(DIRICHLET_SIZES)]
    plain, _ = FedAvg(fraction_evaluate=0.0).aggregate_train(1, fresh)
    got, want = arrays.to_torch_state_dict(), plain.to_torch_state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)  # bit for bit


def test_validation_max_weight_share_is_a_config_key():
    from fedsim.core.config import ConfigError

    assert ExperimentConfig().validation.max_weight_share == 0.5
    assert ExperimentConfig().replace(**{"validation.max_weight_share": 0.3}).validation.max_weight_share == 0.3
    with pytest.raises(ConfigError, match="validation.max_weight_share"):
        ExperimentConfig().replace(**{"validation.max_weight_share": 1.5})


# ---- defect 4: releases nobody accounts for --------------------------------------------------------------
def _client_reply(cfg, pid=0):
    import fedsim.clients.app as client_app
    from fedsim.server.app import train_config

    sent = __import__("fedsim.core.experiment", fromlist=["make_model"]).make_model(cfg).state_dict()
    ctx = Context(run_id=7, node_id=5, state=RecordDict(), run_config=cfg.to_flat(),
                  node_config={K.PARTITION_ID: pid, K.NUM_PARTITIONS: cfg.run.num_clients})
    msg = Message(RecordDict({K.ARRAYS: ArrayRecord(sent),
                              K.CONFIG: ConfigRecord({**dict(train_config(cfg)), K.SERVER_ROUND: 1})}),
                  dst_node_id=5, message_type=MessageType.TRAIN)
    return client_app.train(msg, ctx)


@pytest.mark.parametrize("dp_sgd", [False, True])
def test_dp_sgd_reply_holds_no_training_loss(tmp_path, serverapp_identity, dp_sgd):
    cfg = ExperimentConfig().replace(**{
        "run.out_dir": str(tmp_path), "run.num_clients": 2, "data.partition": "iid", "model.width": 4,
        "train.algorithm": "fedavg", "train.batch_size": 32, "train.max_local_steps": 2,
        "defense.dp_sgd.enabled": dp_sgd})
    metrics = dict(_client_reply(cfg).content[K.METRICS])
    assert K.NUM_EXAMPLES in metrics
    if dp_sgd:
        assert K.TRAIN_LOSS not in metrics and K.EPSILON in metrics
    else:
        assert math.isfinite(metrics[K.TRAIN_LOSS])  # without DP nothing changes


def _cleartext_keys(reply: Message) -> set[str]:
    """Every key a SecAgg+ reply carries outside Flower's own protocol record (masked vector, key shares)."""
    from flwr.client.mod.secure_aggregation.secaggplus_mod import RECORD_KEY_CONFIGS

    keys = set()
    for name, record in reply.content.config_records.items():
        if name != RECORD_KEY_CONFIGS:  # Flower's protocol record: public keys, encrypted shares, masked vector
            keys |= {f"{name}:{k}" for k in record}
    for name, record in reply.content.metric_records.items():
        keys |= {f"{name}:{k}" for k in record}
    return keys


def test_secagg_reply_cleartext_holds_only_the_listed_keys(tmp_path, serverapp_identity):
    from fedsim.clients.secagg import CLEARTEXT_KEYS
    from fedsim.core.defense.secagg import AGGREGATE_CLIENT
    from tests.test_secagg import run_loopback_secagg

    cfg, folder, grid, captured = run_loopback_secagg(tmp_path)
    fitres = [r for r in grid.received if r.has_content() and "fitres.metrics" in r.content.config_records]
    assert len(fitres) == 3  # the survivors' masked-vector replies
    for reply in fitres:
        assert set(reply.content.config_records["fitres.metrics"]) == {K.PARTITION_ID}
        assert {k for k in _cleartext_keys(reply) if not k.startswith("fitres.status:")} == {
            f"fitres.metrics:{K.PARTITION_ID}", "fitres.num_examples:num_examples"}
    assert set(CLEARTEXT_KEYS) == {K.NUM_EXAMPLES, K.PARTITION_ID, K.EPSILON}
    assert not any(K.TRAIN_LOSS in k or K.LOCAL_STEPS in k for r in grid.received if r.has_content()
                   for k in _cleartext_keys(r))
    assert [(u.client_id, u.local_steps) for u in captured] == [(AGGREGATE_CLIENT, 1)]  # FedSGD: one step


def test_secagg_fitres_keeps_epsilon_and_drops_the_rest():
    from fedsim.clients.secagg import to_fitres
    from flwr.app import MetricRecord

    content = RecordDict({K.ARRAYS: ArrayRecord({"w": torch.tensor([0.5, -0.25])}),
                          K.METRICS: MetricRecord({K.NUM_EXAMPLES: 8, K.TRAIN_LOSS: 2.3, K.EPSILON: 1.5,
                                                   K.EPSILON_ROUND: 0.5, K.DP_STEPS: 1, K.DP_SAMPLE_RATE: 0.1}),
                          K.META: ConfigRecord({K.PARTITION_ID: 3, K.LOCAL_STEPS: 4})})
    out = to_fitres(content, max_weight=8.0, clipping_range=10.0)
    assert dict(out.config_records["fitres.metrics"]) == {K.PARTITION_ID: 3, K.EPSILON: 1.5}
    assert dict(out.metric_records["fitres.num_examples"]) == {"num_examples": 8}


def test_secure_aggregate_steps_are_the_claim_weighted_mean_from_the_config():
    from fedsim.core.training import step_batches
    from fedsim.server.secagg import aggregate_local_steps

    counts, b, epochs = [64, 200], 16, 1
    steps = [len(step_batches(n, "fedavg", b, epochs, seed=0)) for n in counts]
    assert steps == [4, 13]
    assert aggregate_local_steps("fedavg", counts, b, epochs, 0) == round((64 * 4 + 200 * 13) / 264) == 11
    assert aggregate_local_steps("fedavg", counts, b, epochs, 5) == 5  # train.max_local_steps caps both
    assert aggregate_local_steps("fedavg", [64, 64], b, 2, 0) == 8
    assert aggregate_local_steps("fedsgd", counts, b, epochs, 0) == 1


# ---- defect 10: failures that were only logged are rows --------------------------------------------------
def test_a_capture_that_cannot_be_written_is_a_row_and_the_rounds_go_on(tmp_path, monkeypatch):
    import fedsim.core.captures as captures

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(captures, "save_file", full_disk)  # every capture write (global and client files) fails
    after: list = []
    gate, sent, _, folder, _ = _stack(tmp_path, sinks=[CaptureWriter(tmp_path), after.append])
    for rnd in (1, 2):
        _, (arrays, _) = _round(gate, sent, [10, 10, 10], rnd)
        assert arrays is not None
    errors = folder.rows(CaptureErrorRow)
    assert [(r.round, r.client, r.sink) for r in errors] == [(1, 0, "capture"), (1, 1, "capture"), (1, 2, "capture"),
                                                            (2, 0, "capture"), (2, 1, "capture"), (2, 2, "capture")]
    assert "No space left on device" in errors[0].error
    assert len(after) == 6 and not folder.rows(LostRoundRow)  # the next sink still got every update


def test_an_attack_that_cannot_be_scheduled_is_an_attack_error_row(tmp_path, monkeypatch):
    import fedsim.server.scheduler as scheduler

    monkeypatch.setattr(scheduler.CaptureStore, "save", Mock(side_effect=PermissionError("captures/ is read-only")))
    cfg = ExperimentConfig().replace(**{"run.out_dir": str(tmp_path), "attack.enabled": True, "attack.workers": 0})
    hook = scheduler.AttackScheduler(cfg, tmp_path)
    gate, sent, _, folder, _ = _stack(tmp_path, sinks=[hook])
    _, (arrays, _) = _round(gate, sent, [10, 10])
    hook.close()
    assert arrays is not None
    errors = folder.rows(AttackErrorRow)
    assert [(r.round, r.client) for r in errors] == [(1, 0), (1, 1)] and "read-only" in errors[0].error
    assert not folder.rows(CaptureErrorRow)  # the scheduler reported it itself


class _BreakFirstReply(StrategyWrapper):
    """A wrapper between the gate and the curious strategy that leaves the first reply without its meta record."""

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        del replies[0].content[K.META]
        return self.inner.aggregate_train(server_round, replies)


def test_a_reply_invalid_after_the_wrappers_is_a_rejection_row(tmp_path):
    gate, sent, captured, folder, handed = _stack(tmp_path, between=_BreakFirstReply)
    _, (arrays, _) = _round(gate, sent, [10, 10, 10])
    assert arrays is not None and len(handed[-1]) == 2 and len(captured) == 2
    rows = folder.rejection_rows()
    assert len(rows) == 1 and rows[0].action is None
    assert rows[0].reason.startswith("invalid after the server-side wrappers: ")


def test_the_report_shows_capture_errors_and_capped_replies(tmp_path):
    from fedsim.lab.report.data import load_run
    from fedsim.lab.report.failures import failures

    folder = RunFolder(tmp_path)
    folder.append(CaptureErrorRow(round=2, client=1, sink="capture", error="OSError: No space left on device"))
    folder.append(RejectionRow(round=3, node=11, client=0, reason="num-examples=5000 weighted as 50", action="capped"))
    data = load_run(tmp_path)
    assert len(data.capture_errors) == 1 and not data.empty
    html = failures(data)
    assert "Updates not captured (1)" in html and "No space left on device" in html
    # a capped reply is listed apart from the rejected ones (it was aggregated with a lowered weight)
    capped = html.split("Capped client replies", 1)
    assert len(capped) == 2 and "weighted as 50" in capped[1]
    assert "weighted as 50" not in capped[0].split("Rejected client replies", 1)[-1]
