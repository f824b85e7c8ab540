"""Defenses on the Flower path, with mocked messages (no Ray): what the curious server captures changes.

Client side: the config-driven ``defense_mods`` runs Flower's ``LocalDpMod`` / ``fixedclipping_mod`` and our update
defenses around a fake train function; the replies go into the real ``CuriousStrategy``. (SecAgg+: test_secagg.py.) Server side: Flower's
central-DP wrapper is outermost, so captures are clipped and only the aggregate is noised.
"""

from unittest.mock import Mock

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.serverapp.strategy import FedAvg

from fedsim.clients.mods import defense_mods
from fedsim.core.runfolder import RunFolder
from fedsim.core.config import ExperimentConfig
from fedsim.core.defense.update import global_norm
from fedsim.core.models import build_model
from fedsim.server.defense_wiring import DefenseTap, known_defenses, wrap_strategy
from fedsim.server.strategy import CuriousStrategy, TrainSettings


def _model():
    return build_model("convnet", (1, 8, 8), 3, seed=0, width=2)


def _msg(content, node=7):
    msg = Mock(spec=Message)
    msg.content = RecordDict(content)
    msg.has_error.side_effect = lambda: False
    msg.has_content.side_effect = lambda: True
    msg.metadata = Mock(src_node_id=node, message_type=MessageType.TRAIN)
    return msg


def _trained(sent, pid):
    g = torch.Generator().manual_seed(pid)
    return {k: v + 0.5 * torch.randn(v.shape, generator=g) for k, v in sent.items()}


def _client_reply(cfg, sent, pid, num_parts=3, weight=8, extra_config=None):
    """Run the ClientApp's mod chain around a fake train() that returns fixed trained weights."""
    conf = {"server-round": 1, **(extra_config or {})}
    incoming = _msg({"arrays": ArrayRecord(sent), "config": ConfigRecord(conf)})
    ctx = Mock(run_config=cfg.to_flat(), node_config={"partition-id": pid, "num-partitions": num_parts})

    def fake_train(m, c):
        return _msg({"arrays": ArrayRecord(_trained(sent, pid)),
                     "metrics": MetricRecord({"num-examples": weight, "train_loss": 1.0}),
                     "meta": ConfigRecord({"partition-id": pid, "local-steps": 1})})

    return defense_mods(incoming, ctx, fake_train)


def _curious(cfg, sent, captured):
    model = _model()
    strategy = CuriousStrategy(FedAvg(fraction_evaluate=0.0), run_id="r",
                               parameter_names=[n for n, _ in model.named_parameters()],
                               settings=TrainSettings("fedsgd", 0.1, 1, 8, known_defenses(cfg)),
                               sinks=[captured.append])
    strategy.inner.configure_train = Mock(return_value=[])
    return strategy


def _delta(update):
    return {k: update.weights_after[k] - update.weights_before[k] for k in update.weights_before}


def _capture(cfg, pids=(0, 1, 2), extra_config=None, weights=(8, 8, 8)):
    sent = _model().state_dict()
    captured = []
    strategy = _curious(cfg, sent, captured)
    list(strategy.configure_train(1, ArrayRecord(sent), ConfigRecord({}), Mock()))
    replies = [_client_reply(cfg, sent, p, extra_config=extra_config, weight=w) for p, w in zip(pids, weights)]
    arrays, _ = strategy.aggregate_train(1, replies)
    return sent, captured, arrays


def test_local_dp_mod_clips_and_adds_the_configured_noise():
    """Captured = sent + clip_C(trained - sent) + N(0, sigma^2), sigma = C * sqrt(2 ln(1.25/delta)) / epsilon."""
    import math

    cfg = ExperimentConfig().replace(**{"defense.local_dp.enabled": True, "defense.local_dp.clip_norm": 0.5,
                                        "defense.local_dp.epsilon": 50.0, "defense.local_dp.delta": 1e-5})
    import numpy as np

    np.random.seed(0)  # Flower's LocalDpMod draws with numpy's global generator: a fixed draw, not a flaky test
    sent, noisy, _ = _capture(cfg)
    assert noisy[0].defenses["defense.local_dp.enabled"] is True
    sigma = 0.5 * math.sqrt(2 * math.log(1.25 / 1e-5)) / 50.0
    for u in noisy:
        trained = _trained(sent, u.client_id)
        raw = {k: trained[k] - sent[k] for k in sent}
        scale = min(1.0, 0.5 / global_norm(raw))
        noise = torch.cat([(_delta(u)[k] - scale * raw[k]).flatten() for k in u.weights_before])
        assert global_norm(raw) > 2.0 and abs(float(noise.mean())) < 4 * sigma / math.sqrt(len(noise))
        assert float(noise.std()) == pytest.approx(sigma, rel=0.15), (float(noise.std()), sigma, len(noise))


def test_fixedclipping_mod_bounds_captured_updates():
    cfg = ExperimentConfig().replace(**{"defense.central_dp.clipping": "client", "defense.central_dp.clip_norm": 0.3})
    _, captured, _ = _capture(cfg, extra_config={"clipping_norm": 0.3})  # the server wrapper adds this key
    for u in captured:
        assert global_norm(_delta(u)) <= 0.3 + 1e-5


def test_update_defense_mod_sparsifies_the_sent_update():
    cfg = ExperimentConfig().replace(**{"defense.update.topk_ratio": 0.1})
    sent, captured, _ = _capture(cfg, extra_config={"seed": 0})
    for u in captured:
        for k, d in _delta(u).items():
            assert int((d != 0).sum()) <= -(-d.numel() // 10)  # ceil(0.1 n) kept (rounding may zero more)
            assert int((d != 0).sum()) >= 1


def test_central_dp_wrapper_is_outermost_and_captures_are_clipped(tmp_path):
    cfg = ExperimentConfig().replace(**{"defense.central_dp.clipping": "server", "defense.central_dp.clip_norm": 0.2,
                                        "defense.central_dp.noise_multiplier": 1.0, "run.num_clients": 3})
    sent = _model().state_dict()
    captured = []
    curious = _curious(cfg, sent, captured)
    strategy = wrap_strategy(curious, cfg, RunFolder(tmp_path))
    # CentralDpRelease (equal weights, privacy row per release) directly around Flower's wrapper
    assert type(strategy).__name__ == "CentralDpRelease"
    assert type(strategy.inner).__name__ == "DifferentialPrivacyServerSideFixedClipping"
    list(strategy.configure_train(1, ArrayRecord(sent), ConfigRecord({}), Mock()))
    replies = [_client_reply(ExperimentConfig(), sent, p) for p in range(3)]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert len(captured) == 3
    for u in captured:
        assert global_norm(_delta(u)) <= 0.2 + 1e-5
    # the released aggregate is noised: std = noise * clip / 3 per coordinate, far beyond the clipped mean
    agg = arrays.to_torch_state_dict()
    noisy = {k: agg[k] - sent[k] for k in sent}
    assert global_norm(noisy) > 2 * 0.2  # the clipped mean alone has norm <= 0.2


def test_privacy_rows_carry_epsilon(tmp_path):
    import json

    cfg = ExperimentConfig().replace(**{"defense.dp_sgd.enabled": True})  # DP-SGD's object writes the row
    sent = _model().state_dict()
    captured = []
    tap = DefenseTap(_curious(cfg, sent, captured), cfg, RunFolder(tmp_path))
    list(tap.configure_train(1, ArrayRecord(sent), ConfigRecord({}), Mock()))
    replies = []
    for p, eps in enumerate((1.5, 2.5)):
        r = _client_reply(cfg, sent, p)
        r.content["metrics"]["epsilon"] = eps
        replies.append(r)
    tap.aggregate_train(1, replies)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["kind"] == "privacy" and rows[0]["epsilon"] == 2.5


def test_dp_sgd_client_reports_the_expected_batch_not_the_poisson_draw(tmp_path, monkeypatch):
    """Issue 14.2: under DP-SGD the ClientApp releases min(B, n) (FedSGD), whatever Poisson drew; the audit
    channel still records the realised batches for scoring."""
    import fedsim.clients.app as client_app
    from flwr.app import Context
    from flwr.supercore.task_identity import TaskIdentity

    from fedsim.evaluation.truth import read_ground_truth
    from fedsim.core.experiment import make_model
    from fedsim.server.app import train_config

    for name, value in (("_run_id", 7), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)
    cfg = ExperimentConfig().replace(**{
        "run.out_dir": str(tmp_path), "run.num_clients": 2, "data.partition": "iid", "model.width": 4,
        "train.algorithm": "fedsgd", "train.batch_size": 8, "defense.dp_sgd.enabled": True})
    sent = make_model(cfg).state_dict()
    ctx = Context(run_id=7, node_id=5, state=RecordDict(), run_config=cfg.to_flat(),
                  node_config={"partition-id": 0, "num-partitions": 2})
    released, realised = set(), set()
    for rnd in range(1, 5):
        msg = Message(RecordDict({"arrays": ArrayRecord(sent),
                                  "config": ConfigRecord({**dict(train_config(cfg)), "server-round": rnd})}),
                      dst_node_id=5, message_type=MessageType.TRAIN)
        reply = client_app.train(msg, ctx)
        released.add(int(reply.content["metrics"]["num-examples"]))
        realised.add(len(read_ground_truth(tmp_path, rnd, 0).labels[0]))
    assert released == {8} and len(realised) > 1
