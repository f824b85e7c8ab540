"""Fault injection: every corrupt kind produced by clients/faults.py is rejected by the curious strategy before
aggregation and attack (mocked Flower replies, no Ray), logged in rejections.jsonl, and the round aggregates
the rest; dropouts (error replies) are skipped; an injected attack crash becomes an ok:false row."""

import json
import subprocess
import sys
from pathlib import Path
from unittest.mock import Mock

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from fedsim.clients import faults
from fedsim.core.runfolder import RunFolder
from fedsim.core.config import ConfigError, ExperimentConfig, load_config
from fedsim.core.faults_spec import CORRUPT_KINDS, parse_faults
from fedsim.core.models import build_model
from fedsim.core.results import read_jsonl
from fedsim.server.strategy import CuriousStrategy, TrainSettings

ROOT = Path(__file__).resolve().parents[1]


def _reply(state, metrics, pid, node=None):
    msg = Mock(spec=Message)
    msg.content = RecordDict({"arrays": ArrayRecord(state), "metrics": MetricRecord(metrics),
                              "meta": ConfigRecord({"partition-id": pid, "local-steps": 1})})
    msg.has_error.side_effect = lambda: False
    msg.has_content.side_effect = lambda: True
    msg.metadata = Mock(src_node_id=node or 100 + pid)
    return msg


def _error_reply(pid):
    msg = Mock(spec=Message)
    msg.has_error.side_effect = lambda: True
    msg.has_content.side_effect = lambda: False
    msg.error = Mock(code=0, reason="injected dropout")
    msg.metadata = Mock(src_node_id=100 + pid)
    return msg


def _strategy(tmp_path, defenses=None):
    model = build_model("convnet", (1, 8, 8), 3, seed=0, width=2, batchnorm=True)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    captured = []
    strategy = CuriousStrategy(
        FedAvg(fraction_evaluate=0.0), run_id="r", parameter_names=[n for n, _ in model.named_parameters()],
        settings=TrainSettings("fedavg", 0.1, 1, 4, defenses or {}), sinks=[captured.append],
        run_folder=RunFolder(tmp_path))
    strategy.inner.configure_train = Mock(return_value=[])
    list(strategy.configure_train(1, ArrayRecord(sent), ConfigRecord({"lr": 0.1}), Mock()))
    return strategy, sent, captured


def _honest(sent, seed, scale=0.01):
    g = torch.Generator().manual_seed(seed)
    return {k: (v + scale * torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone())
            for k, v in sent.items()}


EXPECTED = {"nan": "NaN or Inf", "inf": "NaN or Inf", "shape": "shape", "dtype": "dtype",
            "missing_key": "missing", "extra_key": "extra", "num_examples": "num-examples",
            "huge_norm": "update norm"}


@pytest.mark.parametrize("kind", CORRUPT_KINDS)
def test_each_corrupt_kind_is_rejected_and_the_round_goes_on(tmp_path, kind):
    strategy, sent, captured = _strategy(tmp_path)
    replies = [_reply(_honest(sent, s), {"num-examples": 10, "train_loss": 1.0}, s) for s in range(3)]
    bad_state, bad_metrics = faults.corrupt_state(kind, _honest(sent, 9), sent,
                                                  {"num-examples": 10, "train_loss": 1.0})
    arrays, _ = strategy.aggregate_train(1, replies + [_reply(bad_state, bad_metrics, 3)])
    assert arrays is not None
    assert sorted(u.client_id for u in captured) == [0, 1, 2]  # never reaches capture / attack
    plain, _ = FedAvg().aggregate_train(1, [_reply(_honest(sent, s), {"num-examples": 10, "train_loss": 1.0}, s)
                                            for s in range(3)])
    for k, v in arrays.to_torch_state_dict().items():
        torch.testing.assert_close(v, plain.to_torch_state_dict()[k])
    rows = list(read_jsonl(tmp_path / "rejections.jsonl"))
    assert len(rows) == 1 and rows[0]["client"] == 3 and rows[0]["round"] == 1
    assert EXPECTED[kind] in rows[0]["reason"], rows[0]["reason"]


def test_huge_norm_rejected_by_the_clipping_bound_with_two_replies(tmp_path):
    strategy, sent, captured = _strategy(tmp_path, {"defense.update.clip_norm": 1.0, "defense.update.noise_std": 0.0})
    bad, m = faults.corrupt_state("huge_norm", _honest(sent, 9), sent, {"num-examples": 10, "train_loss": 1.0})
    arrays, _ = strategy.aggregate_train(1, [_reply(_honest(sent, 0), {"num-examples": 10}, 0), _reply(bad, m, 1)])
    assert arrays is not None and [u.client_id for u in captured] == [0]
    assert "clipping bound" in list(read_jsonl(tmp_path / "rejections.jsonl"))[0]["reason"]


def test_honest_spread_is_not_rejected(tmp_path):
    strategy, sent, captured = _strategy(tmp_path, {"clip_norm": 1.0})
    replies = [_reply(_honest(sent, s, scale=0.001 * 10 ** (s % 3)), {"num-examples": 10}, s) for s in range(5)]
    strategy.aggregate_train(1, replies)
    assert len(captured) == 5 and not (tmp_path / "rejections.jsonl").exists()


def test_dropouts_are_skipped_and_the_rest_aggregated(tmp_path):
    strategy, sent, captured = _strategy(tmp_path)
    replies = [_reply(_honest(sent, s), {"num-examples": 10}, s) for s in range(2)] + [_error_reply(2)]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None and len(captured) == 2


def test_every_reply_bad_gives_no_aggregate(tmp_path):
    strategy, sent, captured = _strategy(tmp_path)
    bad, m = faults.corrupt_state("nan", _honest(sent, 1), sent, {"num-examples": 10})
    assert strategy.aggregate_train(1, [_reply(bad, m, 0), _error_reply(1)]) == (None, None)


def test_fault_plan_and_client_side_hooks():
    cfg = ExperimentConfig().replace(**{"faults.enabled": True, "faults.corrupt": "3:nan:1,3:inf:2,4:dtype",
                                        "faults.dropout": "2:1", "faults.straggle": "1",
                                        "faults.straggle_seconds": 0.0, "faults.attack_crash": "0"})
    plan = parse_faults(cfg.faults)
    assert plan.corruption(3, 1) == "nan" and plan.corruption(3, 2) == "inf" and plan.corruption(4, 7) == "dtype"
    assert plan.corruption(0, 1) is None
    assert plan.drops_out(2, 1) and not plan.drops_out(2, 2)
    assert plan.straggles(1, 5) and plan.crashes_attack(0, 3) and not plan.crashes_attack(1, 3)
    with pytest.raises(faults.InjectedDropout):
        faults.before_training(cfg, 2, 1)
    faults.before_training(cfg, 1, 1)  # straggles 0 s
    off = cfg.replace(**{"faults.enabled": False})
    faults.before_training(off, 2, 1)
    state = {"w": torch.ones(2)}
    assert faults.corrupt(off, 3, 1, state, state, {"num-examples": 1})[2] is None


@pytest.mark.parametrize("key, value, says", [
    ("faults.corrupt", "1:bogus", "nan, inf"),
    ("faults.corrupt", "x:nan", "faults.corrupt"),
    ("faults.dropout", "1:2:3", "client[:round]"),
    ("faults.straggle", "a", "faults.straggle"),
])
def test_bad_fault_specs_name_the_key(key, value, says):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        ExperimentConfig().replace(**{key: value})
    assert says in str(err.value)


def test_injected_attack_crash_becomes_an_ok_false_row(tmp_path):
    from fedsim.core.captures import capture_path, save_update
    from fedsim.server.scheduler import AttackScheduler

    cfg = load_config(ROOT / "configs" / "smoke.toml", {"attack.enabled": True, "attack.workers": 0,
                                                         "faults.enabled": True, "faults.attack_crash": "1",
                                                         "run.out_dir": str(tmp_path)})
    strategy, sent, captured = _strategy(tmp_path)
    strategy.aggregate_train(1, [_reply(_honest(sent, s), {"num-examples": 10}, s) for s in range(2)])
    scheduler = AttackScheduler(cfg, tmp_path)
    update = captured[1]
    save_update(update, capture_path(tmp_path, 1, 1))
    scheduler(update)
    scheduler.close()
    rows = list(read_jsonl(tmp_path / "metrics.jsonl"))
    assert rows and rows[0]["kind"] == "attack_error" and rows[0]["ok"] is False
    assert "injected attack crash" in rows[0]["error"] and rows[0]["client"] == 1


@pytest.mark.slow
def test_faults_preset_completes_every_round_under_central_dp(tmp_path):
    """Every fault kind under Flower's server-side central-DP wrapper: each round aggregates the honest replies
    (the global model changes every round), every rejection and dropout is logged, the run exits 0."""
    out = tmp_path / "faults"
    dp = ["--set", "defense.central_dp.clipping=server", "--set", "defense.central_dp.noise_multiplier=0.01",
          "--set", "defense.central_dp.clip_norm=10"]
    proc = subprocess.run([sys.executable, "-m", "fedsim.lab.cli", "run", str(ROOT / "configs" / "faults.toml"),
                           "--out", str(out), "--quiet", *dp], capture_output=True, text=True, timeout=580,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    cfg = load_config(ROOT / "configs" / "faults.toml")
    rows = list(read_jsonl(out / "metrics.jsonl"))
    util = sorted((r for r in rows if r["kind"] == "utility"), key=lambda r: r["round"])
    assert [r["round"] for r in util] == list(range(cfg.run.num_rounds + 1))
    losses = [r["test_loss"] for r in util]
    assert all(a != b for a, b in zip(losses, losses[1:])), losses  # the global model changed every round
    assert not [r for r in rows if r["kind"] == "lost_round"]
    all_rejections = list(read_jsonl(out / "rejections.jsonl"))
    dropouts = [r for r in all_rejections if r["reason"].startswith("client reported an error")]
    assert len(dropouts) == cfg.run.num_rounds  # client 2 drops out in every round
    rejections = [r for r in all_rejections if r not in dropouts]
    plan = parse_faults(cfg.faults)
    expected = {(r, c) for r in range(1, cfg.run.num_rounds + 1) for c in range(cfg.run.num_clients)
                if plan.corruption(c, r)}
    assert {(r["round"], r["client"]) for r in rejections} == expected
    kinds = {plan.corruption(r["client"], r["round"]): r["reason"] for r in rejections}
    for kind, reason in kinds.items():
        assert EXPECTED[kind] in reason, (kind, reason)
    assert {r["client"] for r in rows if r["kind"] == "attack_error"} == {0}
    assert any(r["kind"] == "label" and r["client"] == 1 and r["ok"] for r in rows)
    from fedsim.core.captures import iter_captures, load_update
    caps = {(load_update(p).server_round, load_update(p).client_id) for p in iter_captures(out)}
    assert caps == {(r, c) for r in range(1, cfg.run.num_rounds + 1) for c in (0, 1)}
