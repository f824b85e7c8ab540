"""The curious strategy, tested on mocked Flower replies (no Ray): captures equal what clients sent, the
honest aggregate equals plain FedAvg's, malformed replies are rejected with a reason and the round goes on."""

import json
from unittest.mock import Mock

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from fedsim.core.runfolder import RunFolder
from fedsim.core.captures import iter_captures, load_update
from fedsim.core.models import build_model
from fedsim.server.sinks import CaptureWriter
from fedsim.server.strategy import CuriousStrategy, TrainSettings


def _reply(state, num_examples=10, pid=0, steps=1, drop=None, node=7):
    content = {"arrays": ArrayRecord(state), "metrics": MetricRecord({"num-examples": num_examples, "train_loss": 1.0}),
               "meta": ConfigRecord({"partition-id": pid, "local-steps": steps})}
    if drop:
        content.pop(drop)
    msg = Mock(spec=Message)
    msg.content = RecordDict(content)
    msg.has_error.side_effect = lambda: False
    msg.has_content.side_effect = lambda: True
    msg.metadata = Mock(src_node_id=node)
    return msg


@pytest.fixture
def setup(tmp_path):
    model = build_model("convnet", (1, 8, 8), 3, seed=0, width=2, batchnorm=True)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    captured = []
    strategy = CuriousStrategy(
        FedAvg(fraction_evaluate=0.0), run_id="r", parameter_names=[n for n, _ in model.named_parameters()],
        settings=TrainSettings("fedavg", 0.1, 1, 4, {}),
        sinks=[captured.append, CaptureWriter(tmp_path)], run_folder=RunFolder(tmp_path))
    grid = Mock()
    grid.get_node_ids.return_value = [1, 2, 3]
    strategy.inner.configure_train = Mock(return_value=[])  # real Messages need a live run
    list(strategy.configure_train(1, ArrayRecord(sent), ConfigRecord({"lr": 0.1}), grid))
    return strategy, sent, captured, tmp_path


def _perturbed(sent, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: (v + torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()) for k, v in sent.items()}


def test_captures_equal_what_clients_sent_and_aggregate_is_fedavg(setup):
    strategy, sent, captured, run = setup
    states = [_perturbed(sent, s) for s in range(3)]
    replies = [_reply(st, num_examples=n, pid=i) for i, (st, n) in enumerate(zip(states, (5, 10, 15)))]
    arrays, _ = strategy.aggregate_train(1, replies)
    plain, _ = FedAvg().aggregate_train(1, [_reply(st, num_examples=n, pid=i)
                                            for i, (st, n) in enumerate(zip(states, (5, 10, 15)))])
    for k, v in arrays.to_torch_state_dict().items():
        torch.testing.assert_close(v, plain.to_torch_state_dict()[k])
    assert [u.client_id for u in captured] == [0, 1, 2]
    for update, st in zip(captured, states):
        for name, t in update.weights_after.items():
            assert torch.equal(t, st[name])
        for name, t in update.weights_before.items():
            assert torch.equal(t, sent[name])
        assert "features.1.running_mean" in update.buffers_after
    files = list(iter_captures(run))
    assert len(files) == 3
    loaded = load_update(files[1])
    assert loaded.client_id == 1 and loaded.num_examples == 10
    for name, t in loaded.weights_after.items():
        assert torch.equal(t, states[1][name])


@pytest.mark.parametrize("corrupt, reason", [
    ("nan", "NaN or Inf"),
    ("shape", "shape"),
    ("missing_key", "missing"),
    ("no_meta", "lacks the ConfigRecord"),
    ("absurd_count", "num-examples"),
    ("dtype", "dtype"),
])
def test_malformed_replies_are_rejected_and_round_goes_on(setup, corrupt, reason):
    strategy, sent, captured, run = setup
    good = [_reply(_perturbed(sent, s), pid=s) for s in range(2)]
    bad_state = _perturbed(sent, 9)
    drop = None
    num = 10
    if corrupt == "nan":
        bad_state["classifier.weight"][0, 0] = float("nan")
    elif corrupt == "shape":
        bad_state["classifier.weight"] = torch.zeros(2, 2)
    elif corrupt == "missing_key":
        bad_state.pop("classifier.bias")
    elif corrupt == "no_meta":
        drop = "meta"
    elif corrupt == "absurd_count":
        num = 10**12
    elif corrupt == "dtype":
        bad_state["classifier.weight"] = bad_state["classifier.weight"].double()
    arrays, _ = strategy.aggregate_train(1, good + [_reply(bad_state, num_examples=num, pid=2, drop=drop)])
    assert arrays is not None
    assert [u.client_id for u in captured] == [0, 1]
    rows = [json.loads(l) for l in (run / "rejections.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and reason in rows[0]["reason"]


def test_failing_sink_does_not_kill_the_round(setup):
    strategy, sent, captured, _ = setup

    def boom(update):
        raise RuntimeError("attack crashed")

    strategy.sinks.insert(0, boom)
    arrays, _ = strategy.aggregate_train(1, [_reply(_perturbed(sent, s), pid=s) for s in range(2)])
    assert arrays is not None and len(captured) == 2
