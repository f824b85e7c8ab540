"""Defenses on the Flower path, with mocked messages (no Ray): what the curious server captures changes.

Client side: the config-driven ``defense_mod`` runs Flower's ``LocalDpMod`` / ``fixedclipping_mod`` and our SecAgg
masks around a fake train function; the replies go into the real ``CuriousStrategy``. Server side: Flower's
central-DP wrapper is outermost, so captures are clipped and only the aggregate is noised.
"""

from unittest.mock import Mock

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
from flwr.serverapp.strategy import FedAvg

from clients.dp import defense_mod
from fedsim.runfolder import RunFolder
from fedsim.config import ExperimentConfig
from fedsim.defenses import global_norm
from fedsim.models import build_model
from server.defense_wiring import AGGREGATE_CLIENT, DefenseTap, known_defenses, wrap_strategy
from server.strategy import CuriousStrategy, TrainSettings


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

    return defense_mod(incoming, ctx, fake_train)


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


def test_local_dp_mod_changes_what_the_server_captures():
    plain_cfg = ExperimentConfig()
    _, plain, _ = _capture(plain_cfg)
    cfg = plain_cfg.replace(**{"defense.local_dp": True, "defense.local_dp_clip": 0.5,
                               "defense.local_dp_epsilon": 50.0})
    _, noisy, _ = _capture(cfg)
    assert noisy[0].defenses["local_dp"] is True and noisy[0].defenses["local_dp_clip"] == 0.5
    # plain captures carry exactly the fake training's update; LocalDpMod clipped to 0.5 then added noise
    d_plain, d_noisy = _delta(plain[0]), _delta(noisy[0])
    assert global_norm(d_plain) > 2.0
    assert not torch.allclose(d_plain["fc.weight"] if "fc.weight" in d_plain else next(iter(d_plain.values())),
                              d_noisy["fc.weight"] if "fc.weight" in d_noisy else next(iter(d_noisy.values())))
    assert global_norm(d_noisy) < global_norm(d_plain)


def test_fixedclipping_mod_bounds_captured_updates():
    cfg = ExperimentConfig().replace(**{"defense.central_dp": "client", "defense.central_dp_clip": 0.3})
    _, captured, _ = _capture(cfg, extra_config={"clipping_norm": 0.3})  # the server wrapper adds this key
    for u in captured:
        assert global_norm(_delta(u)) <= 0.3 + 1e-5


def test_topk_in_train_changes_the_sent_update():
    from clients.dp import train_defended

    from fedsim.config import DefenseSection
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 3
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, state, _ = train_defended(DefenseSection(topk_ratio=0.1), model, x, y, algorithm="fedsgd", lr=0.1,
                                 epochs=1, batch_size=8, seed=1, server_round=1, client_id=0, max_steps=0)
    for k, v in state.items():
        n = v.numel()
        assert int(((v - before[k]) != 0).sum()) <= -(-n // 10)  # ceil(0.1 n) kept (rounding may zero more)


def test_secagg_hides_individual_updates_but_not_the_aggregate(tmp_path):
    plain_cfg = ExperimentConfig().replace(**{"run.out_dir": str(tmp_path)})
    sent, plain, plain_agg = _capture(plain_cfg, weights=(5, 8, 11))
    cfg = plain_cfg.replace(**{"defense.secagg": True})
    _, masked, masked_agg = _capture(cfg, weights=(5, 8, 11))
    for p, m in zip(plain, masked):
        assert global_norm(_delta(m)) > 2 * global_norm(_delta(p))  # the capture is mostly mask
    a, b = plain_agg.to_torch_state_dict(), masked_agg.to_torch_state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4)


def test_secagg_tap_attacks_the_aggregate(tmp_path):
    cfg = ExperimentConfig().replace(**{"run.out_dir": str(tmp_path), "defense.secagg": True})
    sent = _model().state_dict()
    captured = []
    tap = DefenseTap(_curious(cfg, sent, captured), cfg, RunFolder(tmp_path))
    list(tap.configure_train(1, ArrayRecord(sent), ConfigRecord({}), Mock()))
    replies = [_client_reply(cfg, sent, p, weight=8) for p in range(3)]
    tap.aggregate_train(1, replies)
    agg = [u for u in captured if u.client_id == AGGREGATE_CLIENT]
    assert len(agg) == 1 and agg[0].num_examples == 24 and agg[0].defenses["aggregate_of"] == 3
    mean_delta = {k: sum(_trained(sent, p)[k] - sent[k] for p in range(3)) / 3 for k in agg[0].weights_before}
    for k, v in _delta(agg[0]).items():
        assert torch.allclose(v, mean_delta[k], atol=1e-4)


def test_central_dp_wrapper_is_outermost_and_captures_are_clipped(tmp_path):
    cfg = ExperimentConfig().replace(**{"defense.central_dp": "server", "defense.central_dp_clip": 0.2,
                                        "defense.central_dp_noise": 1.0, "run.num_clients": 3})
    sent = _model().state_dict()
    captured = []
    curious = _curious(cfg, sent, captured)
    strategy = wrap_strategy(curious, cfg, RunFolder(tmp_path))
    assert type(strategy).__name__ == "DifferentialPrivacyServerSideFixedClipping"
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

    cfg = ExperimentConfig()
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
