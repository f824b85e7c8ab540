"""The server cannot be fooled and loses no round in silence (issue 14 items 1 and 4), with mocked replies.

- the reply gate screens before Flower's central-DP wrapper: one dropout or one malformed reply no longer makes
  the wrapper skip the round (it did: "Some clients reported errors. Skipping aggregation.") or raise;
- a round with nothing valid is a ``lost_round`` row and ``fedsim run`` ends non-zero with one line;
- claimed example counts and update norms are bounded robustly, also with two nodes and across rounds.
"""

from __future__ import annotations

from unittest.mock import Mock

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg

from fedsim.core.errors import RoundsLost
from fedsim.lab.cli import check_complete
from fedsim.core.models import build_model
from fedsim.core.rows import LostRoundRow, UtilityRow
from fedsim.core.runfolder import RunFolder
from fedsim.server.strategy import CuriousStrategy
from fedsim.server.validation import Bounds, ReplyGate, ReplyScreen, TrainSettings, lower_median
from tests.test_faults import _error_reply, _honest, _reply


def _stack(tmp_path, *, central_dp: bool, bounds: Bounds = Bounds(), max_claim=None):
    model = build_model("convnet", (1, 8, 8), 3, seed=0, width=2)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    folder = RunFolder(tmp_path)
    screen = ReplyScreen(names, TrainSettings("fedavg", 0.1, 1, 4, {}, max_claim=max_claim), "r", folder, bounds)
    captured: list = []
    inner = FedAvg(fraction_evaluate=0.0)
    inner.configure_train = Mock(return_value=[])
    curious = CuriousStrategy(inner, run_id="r", parameter_names=names, settings=screen.settings,
                              sinks=[captured.append], run_folder=folder, screen=screen)
    wrapped = curious
    if central_dp:
        wrapped = DifferentialPrivacyServerSideFixedClipping(curious, noise_multiplier=0.0, clipping_norm=1e6,
                                                             num_sampled_clients=4)
    gate = ReplyGate(wrapped, screen)
    return gate, sent, captured, folder


def _configure(gate, sent, rnd=1):
    list(gate.configure_train(rnd, ArrayRecord(sent), ConfigRecord({}), Mock()))


@pytest.mark.parametrize("central_dp", [False, True])
def test_dropout_and_malformed_reply_do_not_lose_the_round(tmp_path, central_dp):
    gate, sent, captured, folder = _stack(tmp_path, central_dp=central_dp)
    _configure(gate, sent)
    bad = _reply(_honest(sent, 9), {"num-examples": 10}, 3)
    del bad.content["meta"]
    replies = [_reply(_honest(sent, s), {"num-examples": 10}, s) for s in range(2)] + [_error_reply(2), bad]
    arrays, _ = gate.aggregate_train(1, replies)
    assert arrays is not None
    agg = arrays.to_torch_state_dict()
    expected = {k: (_honest(sent, 0)[k] + _honest(sent, 1)[k]) / 2 for k in sent if sent[k].is_floating_point()}
    for k, v in expected.items():  # noise 0, clip far away: the aggregate is the FedAvg of the two valid replies
        assert torch.allclose(agg[k], v, atol=1e-6), k
    assert sorted(u.client_id for u in captured) == [0, 1]
    reasons = [r.reason for r in folder.rejection_rows()]
    assert len(reasons) == 2 and any("injected dropout" in r for r in reasons) and any("meta" in r for r in reasons)
    assert not folder.rows(LostRoundRow)


def test_a_round_with_nothing_valid_is_lost_and_the_run_exits_nonzero(tmp_path):
    gate, sent, captured, folder = _stack(tmp_path, central_dp=True)
    _configure(gate, sent)
    arrays, _ = gate.aggregate_train(1, [_error_reply(0), _error_reply(1)])
    assert arrays is None and gate.lost_rounds == [1] and not captured
    (lost,) = folder.rows(LostRoundRow)
    assert lost.round == 1 and lost.failed == 2 and lost.replies == 2
    for rnd in (0, 1, 2):
        folder.append(UtilityRow(round=rnd, test_accuracy=0.1, test_loss=2.3))
    with pytest.raises(RoundsLost, match="1 of 2 rounds lost"):
        check_complete(folder)


def test_cli_maps_lost_rounds_to_one_line_and_exit_3(tmp_path, monkeypatch, capsys):
    from fedsim.lab import cli

    def fake_run(cfg, out, quiet=False, plan=None):
        folder = RunFolder(out)
        out.mkdir(parents=True, exist_ok=True)
        folder.append(UtilityRow(round=1, test_accuracy=0.1, test_loss=2.3))
        folder.append(LostRoundRow(round=1, reason="no valid reply to aggregate (2 received)", replies=2))
        return out

    monkeypatch.setattr("fedsim.lab.runner.run_federation", fake_run)
    code = cli.main(["run", "configs/smoke.toml", "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and "1 of 1 rounds lost" in err[0]


def test_a_huge_claim_cannot_take_over_a_two_node_aggregate(tmp_path):
    gate, sent, captured, folder = _stack(tmp_path, central_dp=False)
    _configure(gate, sent)
    replies = [_reply(_honest(sent, 0), {"num-examples": 50}, 0),
               _reply(_honest(sent, 1), {"num-examples": 999_999}, 1)]
    arrays, _ = gate.aggregate_train(1, replies)
    assert [u.client_id for u in captured] == [0]
    (rej,) = folder.rejection_rows()
    assert rej.client == 1 and "examples_ratio" in rej.reason
    agg = arrays.to_torch_state_dict()
    honest = _honest(sent, 0)
    assert all(torch.allclose(agg[k], honest[k]) for k in sent if sent[k].is_floating_point())


def test_a_huge_norm_is_rejected_with_two_nodes_and_across_rounds(tmp_path):
    gate, sent, captured, folder = _stack(tmp_path, central_dp=False)
    _configure(gate, sent)
    gate.aggregate_train(1, [_reply(_honest(sent, s), {"num-examples": 10}, s) for s in range(2)])
    # round 2: the attacker is one of two replies and both are big: the history of round 1 still catches it
    _configure(gate, sent, 2)
    replies = [_reply(_honest(sent, 5, scale=1e4), {"num-examples": 10}, 0),
               _reply(_honest(sent, 6, scale=1e4), {"num-examples": 10}, 1)]
    arrays, _ = gate.aggregate_train(2, replies)
    assert arrays is None and gate.lost_rounds == [2]
    assert {r.round for r in folder.rejection_rows()} == {2}
    assert all("norm_ratio" in r.reason for r in folder.rejection_rows())


def test_fedsgd_claim_above_the_configured_batch_is_rejected(tmp_path):
    gate, sent, captured, folder = _stack(tmp_path, central_dp=False, max_claim=4)
    _configure(gate, sent)
    gate.aggregate_train(1, [_reply(_honest(sent, 0), {"num-examples": 4}, 0),
                             _reply(_honest(sent, 1), {"num-examples": 5}, 1)])
    assert [u.client_id for u in captured] == [0]
    assert "configured batch" in folder.rejection_rows()[0].reason


def test_honest_spread_passes_the_bounds(tmp_path):
    gate, sent, captured, folder = _stack(tmp_path, central_dp=False)
    for rnd in (1, 2, 3):
        _configure(gate, sent, rnd)
        gate.aggregate_train(rnd, [_reply(_honest(sent, 10 * rnd + s, scale=0.01 * (1 + s)),
                                          {"num-examples": 10 + 40 * s}, s) for s in range(3)])
    rows = folder.rejection_rows()  # none rejected; the 90-claim (share 0.6) is weighted at the 0.5 share bound
    assert len(captured) == 9 and not [r for r in rows if r.action != "capped"]
    assert [(r.round, r.client) for r in rows] == [(1, 2), (2, 2), (3, 2)]


def test_lower_median():
    assert lower_median([3.0, 1.0]) == 1.0 and lower_median([5.0, 1.0, 3.0]) == 3.0
    assert lower_median([float("nan")]) is None and lower_median([]) is None


def test_central_dp_rounds_get_an_epsilon_from_the_rounds_actually_aggregated(tmp_path):
    """Flower's server-side central DP: one privacy row per aggregated round, epsilon from the RDP accountant
    over the releases so far (increasing); a lost round releases nothing and adds no row."""
    from fedsim.core.accounting import central_dp_epsilon
    from fedsim.core.config import ExperimentConfig
    from fedsim.core.rows import PrivacyRow
    from fedsim.server.defense_wiring import wrap_strategy

    cfg = ExperimentConfig().replace(**{"defense.central_dp.clipping": "server",
                                        "defense.central_dp.noise_multiplier": 1.5,
                                        "defense.central_dp.clip_norm": 1e6, "run.num_clients": 2})
    model = build_model("convnet", (1, 8, 8), 3, seed=0, width=2)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    folder = RunFolder(tmp_path)
    screen = ReplyScreen(names, TrainSettings("fedavg", 0.1, 1, 4, {}), "r", folder)
    inner = FedAvg(fraction_evaluate=0.0)
    inner.configure_train = Mock(return_value=[])
    curious = CuriousStrategy(inner, run_id="r", parameter_names=names, settings=screen.settings,
                              run_folder=folder, screen=screen)
    gate = ReplyGate(wrap_strategy(curious, cfg, folder), screen)
    for rnd, replies in ((1, [_reply(_honest(sent, s), {"num-examples": 10}, s) for s in range(2)]),
                         (2, [_error_reply(0), _error_reply(1)]),
                         (3, [_reply(_honest(sent, 5 + s), {"num-examples": 10}, s) for s in range(2)])):
        _configure(gate, sent, rnd)
        gate.aggregate_train(rnd, replies)
    rows = folder.rows(PrivacyRow)
    assert [(r.round, r.mechanism) for r in rows] == [(1, "central_dp"), (3, "central_dp")]
    assert rows[0].epsilon == pytest.approx(central_dp_epsilon(1.5, 1, 1e-5))
    assert rows[1].epsilon == pytest.approx(central_dp_epsilon(1.5, 2, 1e-5)) and rows[1].epsilon > rows[0].epsilon


def test_a_client_error_is_logged_as_its_exception_line():
    """Ray wraps a ClientApp exception in colour codes and actor details; the rejection keeps the exception."""
    from fedsim.server.validation import _error_text

    msg = Mock()
    msg.error = Mock(reason="<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'\x1b[36mray::ClientAppActor"
                            ".run()\x1b[39m (pid=1, ip=1.2.3.4, actor_id=ab)\nTraceback (most recent call last):\n"
                            "  File \"x.py\", line 3, in train\n    raise InjectedDropout(...)\n"
                            "fedsim.clients.faults.InjectedDropout: injected dropout: client 2 in round 1\n")
    assert _error_text(msg) == "fedsim.clients.faults.InjectedDropout: injected dropout: client 2 in round 1"
    msg.error = Mock(reason="<class 'flwr.clientapp.client_app.ClientAppException'>:<'\nException ClientAppException "
                            "occurred. Message: injected dropout: client 4 in round 2'>")
    assert _error_text(msg) == "injected dropout: client 4 in round 2"
    msg.error = Mock(reason="node went away")
    assert _error_text(msg) == "node went away"
