"""Issue 35 defect 6: a reply's client id (``partition-id``) is checked against the cohort the server sampled.

The server knows the nodes it sent a train message to in a round (the messages ``configure_train`` returned, Flower's
Message API); it learns which partition a node holds at first sight (the node config is the client's, never sent
to the server) and holds the node to it. A reply from a node it did not sample, a partition id outside
``[0, run.num_clients)``, a node that changes its partition, a partition claimed by another node than the one
that held it, and a partition claimed twice in one round are rejected with a logged reason (a ``rejections.jsonl``
row) and the round goes on: no update is aggregated twice, captured twice or scored against another client's
ground truth. Real ``FedAvg.configure_train`` (its node sampling and messages) under the live stack
``ReplyGate -> CuriousStrategy -> FedAvg``; replies are fabricated.
"""

from __future__ import annotations

from unittest.mock import Mock

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from fedsim.core import messages as K
from fedsim.core.models import build_model
from fedsim.core.runfolder import RunFolder
from fedsim.server.strategy import CuriousStrategy
from fedsim.server.validation import ReplyGate, ReplyScreen, TrainSettings
from tests.test_faults import _honest, _reply

NODES = (100, 101, 102)


@pytest.fixture(autouse=True)
def serverapp_identity(monkeypatch):
    """What Flower's ServerApp process sets before a strategy creates messages (as in tests/test_trust_server.py)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 7), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def _stack(tmp_path, num_clients=3):
    model = build_model("fcn3", (1, 4, 4), 3, seed=0, hidden=(4,))
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    folder = RunFolder(tmp_path)
    screen = ReplyScreen(names, TrainSettings("fedavg", 0.1, 1, 4, {}), "r", folder, num_clients=num_clients)
    captured: list = []
    curious = CuriousStrategy(FedAvg(fraction_evaluate=0.0), run_id="r", parameter_names=names,
                              settings=screen.settings, sinks=[captured.append], run_folder=folder, screen=screen)
    return ReplyGate(curious, screen), sent, captured, folder


def _round(gate, sent, rnd, replies, connected=NODES):
    """Configure round ``rnd`` on a grid of ``connected`` nodes (FedAvg samples them all), then aggregate
    ``replies``: (node, partition-id) pairs. Returns the aggregate's arrays and the sampled node ids."""
    grid = Mock()
    grid.get_node_ids.return_value = list(connected)
    messages = list(gate.configure_train(rnd, ArrayRecord(sent), ConfigRecord({}), grid))
    msgs = [_reply(_honest(sent, 10 * rnd + i), {K.NUM_EXAMPLES: 10}, pid, node=node)
            for i, (node, pid) in enumerate(replies)]
    arrays, _ = gate.aggregate_train(rnd, msgs)
    return arrays, sorted(m.metadata.dst_node_id for m in messages), msgs


def _mean(msgs):
    states = [m.content[K.ARRAYS].to_torch_state_dict() for m in msgs]
    return {k: sum(s[k] for s in states) / len(states) for k in states[0] if states[0][k].is_floating_point()}


def _assert_aggregate(arrays, msgs):
    agg = arrays.to_torch_state_dict()
    for k, v in _mean(msgs).items():
        torch.testing.assert_close(agg[k], v)


def _rejections(folder, rnd):
    return [(r.node, r.client, r.reason) for r in folder.rejection_rows() if r.round == rnd]


def test_a_partition_taken_by_another_node_is_rejected_and_aggregated_once(tmp_path):
    """Round 1 binds nodes 100/101 to partitions 0/1; in round 2 a new node 202 (sampled too) claims partition 1
    while node 101 still does: its reply is rejected (logged, a row), node 101's is kept, partition 1 is captured
    and aggregated once."""
    gate, sent, captured, folder = _stack(tmp_path)
    arrays, sampled, _ = _round(gate, sent, 1, [(100, 0), (101, 1)], connected=(100, 101))
    assert sampled == [100, 101] and [u.client_id for u in captured] == [0, 1]
    captured.clear()
    arrays, sampled, msgs = _round(gate, sent, 2, [(100, 0), (101, 1), (202, 1)], connected=(100, 101, 202))
    assert sampled == [100, 101, 202]
    assert [u.client_id for u in captured] == [0, 1]  # today: [0, 1, 1], partition 1 twice in FedAvg
    _assert_aggregate(arrays, msgs[:2])
    ((node, client, reason),) = _rejections(folder, 2)
    assert node == 202 and client == 1 and "partition-id 1 is held by node 101" in reason


def test_a_duplicate_at_first_sight_is_rejected_on_both_sides(tmp_path):
    """Two unknown nodes claiming one partition in the same round: the server cannot tell which holds it, so
    neither is aggregated nor bound; the next round binds the partition to the node that claims it alone."""
    gate, sent, captured, folder = _stack(tmp_path)
    arrays, _, msgs = _round(gate, sent, 1, [(100, 0), (101, 1), (102, 1)])
    assert [u.client_id for u in captured] == [0]
    _assert_aggregate(arrays, msgs[:1])
    rows = _rejections(folder, 1)
    assert sorted(n for n, _, _ in rows) == [101, 102] and all("claimed by 2 replies" in r for _, _, r in rows)
    captured.clear()
    _round(gate, sent, 2, [(100, 0), (101, 1), (102, 2)])
    assert [u.client_id for u in captured] == [0, 1, 2] and not _rejections(folder, 2)


@pytest.mark.parametrize("pid,why", [(3, "outside [0, 3)"), (-1, "outside [0, 3)"), (1.0, "not an integer"),
                                     ("1", "not an integer"), (True, "not an integer")])
def test_a_partition_id_outside_the_federation_is_rejected(tmp_path, pid, why):
    gate, sent, captured, folder = _stack(tmp_path)
    arrays, _, msgs = _round(gate, sent, 1, [(100, 0), (101, 1), (102, pid)])
    assert [u.client_id for u in captured] == [0, 1]
    _assert_aggregate(arrays, msgs[:2])
    ((node, _, reason),) = _rejections(folder, 1)
    assert node == 102 and why in reason


def test_a_reply_from_a_node_the_server_did_not_sample_is_rejected(tmp_path):
    """FedAvg samples the connected nodes 100/101/102; a reply from node 999 (sent nothing this round) is out."""
    gate, sent, captured, folder = _stack(tmp_path, num_clients=4)
    arrays, _, msgs = _round(gate, sent, 1, [(100, 0), (101, 1), (999, 3)])
    assert [u.client_id for u in captured] == [0, 1]
    _assert_aggregate(arrays, msgs[:2])
    ((node, _, reason),) = _rejections(folder, 1)
    assert node == 999 and "not sent a train message" in reason


def test_a_node_that_changes_its_partition_is_rejected(tmp_path):
    gate, sent, captured, folder = _stack(tmp_path, num_clients=4)
    _round(gate, sent, 1, [(100, 0), (101, 1), (102, 2)])
    captured.clear()
    _round(gate, sent, 2, [(100, 0), (101, 1), (102, 3)])
    assert [u.client_id for u in captured] == [0, 1]
    ((node, client, reason),) = _rejections(folder, 2)
    assert node == 102 and client == 3 and "partition-id 2" in reason


def test_a_partition_moves_to_a_new_node_only_when_its_node_left(tmp_path):
    """A SuperNode that restarts registers under a new node id: its partition follows it once the old node is no
    longer connected (the grid's node list), never while the old node is still there."""
    gate, sent, captured, folder = _stack(tmp_path)
    _round(gate, sent, 1, [(100, 0), (101, 1), (102, 2)])
    captured.clear()
    _round(gate, sent, 2, [(100, 0), (101, 1), (202, 2)], connected=(100, 101, 102, 202))
    assert [u.client_id for u in captured] == [0, 1] and _rejections(folder, 2)[0][0] == 202
    captured.clear()
    _round(gate, sent, 3, [(100, 0), (101, 1), (202, 2)], connected=(100, 101, 202))
    assert [u.client_id for u in captured] == [0, 1, 2] and not _rejections(folder, 3)


@pytest.mark.parametrize("pids,ok", [((2, 0), True), ((1, 1), False), ((0, 3), False), ((0, 1.0), False), ((0, "1"), False)])
def test_a_secure_aggregate_is_attributed_only_to_a_cohort_of_distinct_partitions(tmp_path, pids, ok):
    """Under SecAgg+ the server cannot drop one reply from the secure sum; a cohort whose cleartext partition ids
    repeat or fall outside the federation is not captured (a capture_error row, via ``aggregate_fit``), so it is
    never scored against a merged truth that counts one client twice."""
    from fedsim.core.config import from_flat
    from fedsim.server.secagg import SecAggCuriousStrategy
    from tests.runfolder import TINY

    cfg = from_flat({**TINY, "run.out_dir": str(tmp_path)})
    strategy = SecAggCuriousStrategy(cfg, "r", [], RunFolder(tmp_path), {}, lambda *a: None)
    strategy.sent = {k: v.clone() for k, v in strategy.initial.items()}
    metrics = [{K.PARTITION_ID: p, K.NUM_EXAMPLES: 4} for p in pids]
    if ok:
        assert strategy.aggregate_update(1, dict(strategy.sent), metrics, [4, 4]).cohort == tuple(sorted(pids))
    else:
        with pytest.raises(ValueError, match="cannot be attributed"):
            strategy.aggregate_update(1, dict(strategy.sent), metrics, [4, 4])
