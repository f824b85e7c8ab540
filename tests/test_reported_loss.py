"""Issue 24: the client's reported training loss, everything the server sees.

- carried: ``ClientUpdate.reported_loss`` round-trips through a capture file, older captures read ``None``, a reply
  without ``train_loss`` (DP-SGD, SecAgg+) gives ``None`` (the server never invents it);
- used: the loss consistency of ``fedsim.attacks.reported_loss`` is 0 for the true batch at W0 (FedSGD) and for
  the true batches in order (FedAvg), larger for noise, and the inversion result carries it as a signal.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from safetensors import safe_open

from fedsim.attacks.pipeline import AttackPlan, DataSpec, attack_update
from fedsim.attacks.reported_loss import SIGNAL, loss_consistency, loss_settings
from fedsim.core import messages as K
from fedsim.core.captures import load_update, save_update
from fedsim.core.config import ExperimentConfig
from fedsim.core.models import build_model
from fedsim.core.training import train_locally
from fedsim.core.types import ClientUpdate, InvalidUpdateError
from tests.test_trust_server import _client_reply, serverapp_identity  # noqa: F401 (fixture)

SHAPE, CLASSES = (1, 8, 8), 4


def _update(reported_loss=None, **kw) -> ClientUpdate:
    before = {"fc.weight": torch.randn(4, 6), "fc.bias": torch.randn(4)}
    after = {n: t + 0.01 for n, t in before.items()}
    return ClientUpdate(run_id="t", server_round=1, client_id=2, algorithm="fedsgd", weights_before=before,
                        weights_after=after, lr=0.1, local_epochs=1, local_steps=1, batch_size=4, num_examples=4,
                        reported_loss=reported_loss, **kw)


def _meta(path) -> str:
    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata()["fedsim"]


def test_reported_loss_round_trips_through_a_capture(tmp_path):
    path = save_update(_update(reported_loss=0.8125), tmp_path / "c.safetensors")
    assert load_update(path).reported_loss == 0.8125


def test_a_capture_without_it_reads_none(tmp_path):
    path = save_update(_update(), tmp_path / "c.safetensors")
    assert "reported_loss" not in _meta(path)  # the layout of captures written before the field existed
    assert load_update(path).reported_loss is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5, "1.0", True])
def test_a_reported_loss_that_is_no_loss_is_invalid(bad):
    with pytest.raises(InvalidUpdateError):
        _update(reported_loss=bad)


@pytest.mark.parametrize("dp_sgd", [False, True])
def test_the_server_records_exactly_what_the_reply_carries(tmp_path, serverapp_identity, dp_sgd):  # noqa: F811
    from fedsim.core.experiment import make_model
    from fedsim.server.app import screen_for

    cfg = ExperimentConfig().replace(**{
        "run.out_dir": str(tmp_path), "run.num_clients": 2, "data.partition": "iid", "model.width": 4,
        "train.algorithm": "fedavg", "train.batch_size": 32, "train.max_local_steps": 2,
        "defense.dp_sgd.enabled": dp_sgd})
    reply = _client_reply(cfg)
    model = make_model(cfg)
    screen = screen_for(cfg, "r", [n for n, _ in model.named_parameters()])
    from flwr.app import ArrayRecord
    screen.remember_sent(1, ArrayRecord(model.state_dict()))
    update = screen.to_update(1, reply)
    metrics = dict(reply.content[K.METRICS])
    if dp_sgd:
        assert K.TRAIN_LOSS not in metrics and update.reported_loss is None
    else:
        assert update.reported_loss == pytest.approx(metrics[K.TRAIN_LOSS]) and math.isfinite(update.reported_loss)


def test_a_secure_aggregate_carries_no_loss(tmp_path, serverapp_identity):  # noqa: F811
    from tests.test_secagg import run_loopback_secagg

    _, _, _, captured = run_loopback_secagg(tmp_path)
    assert captured and all(u.reported_loss is None for u in captured)


def _trained_model_and_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, *SHAPE, generator=g)
    y = torch.arange(8) % CLASSES
    model = build_model("convnet", SHAPE, CLASSES, seed=seed, width=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(30):  # fit the batch a little, so that its loss differs from noise's
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


def _client_loss(model, x, y, algorithm: str, batch_size: int, steps: int):
    client = copy.deepcopy(model)
    result = train_locally(client, x, y, algorithm=algorithm, lr=0.05, epochs=1, batch_size=batch_size, seed=3,
                           server_round=1, client_id=0, max_steps=steps)
    return result


def test_the_true_fedsgd_batch_is_consistent_and_noise_is_not():
    model, x, y = _trained_model_and_batch()
    result = _client_loss(model, x, y, "fedsgd", 8, 1)
    truth = loss_consistency(model, x, y, result.mean_loss)
    noise = loss_consistency(model, torch.randn_like(x), y, result.mean_loss)
    assert truth < 1e-5
    assert noise > 0.05 and noise > 1000 * truth


def test_the_true_fedavg_batches_in_order_are_consistent():
    model, x, y = _trained_model_and_batch(1)
    result = _client_loss(model, x, y, "fedavg", 4, 2)
    xs, ys = result.ground_truth.all_inputs, result.ground_truth.all_labels  # the two batches in the client's order
    assert loss_consistency(model, xs, ys, result.mean_loss, local_steps=2, local_batch_size=4, lr=0.05) < 1e-5
    assert loss_consistency(model, xs, ys, result.mean_loss) > 1e-4  # W0 only: the second step's weights differ


def test_mixup_loss_is_not_reproduced_and_smoothing_is_public():
    assert loss_settings({}) == 0.0
    assert loss_settings({"defense.training.label_smoothing": 0.1}) == pytest.approx(0.1)
    assert loss_settings({"defense.training.mixup_alpha": 0.4}) is None


def test_the_inversion_result_carries_the_reported_loss_signal():
    model, x, y = _trained_model_and_batch(2)
    result = _client_loss(model, x, y, "fedsgd", 8, 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trained = copy.deepcopy(model)
    train_locally(trained, x, y, algorithm="fedsgd", lr=0.05, epochs=1, batch_size=8, seed=3, server_round=1,
                  client_id=0, max_steps=1)
    after = {n: p.detach().clone() for n, p in trained.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    spec = DataSpec(SHAPE, CLASSES, (0.0,), (1.0,))
    plan = AttackPlan(label_methods=("ilrg",), inversion="ig", inversion_steps=2)
    common = dict(run_id="t", server_round=1, client_id=0, algorithm="fedsgd", weights_before=before,
                  weights_after=after, lr=0.05, local_epochs=1, local_steps=1, batch_size=8, num_examples=8,
                  buffers_before=buffers, buffers_after=buffers)

    def factory():
        return build_model("convnet", SHAPE, CLASSES, seed=0, width=4)

    with_loss = attack_update(ClientUpdate(**common, reported_loss=result.mean_loss), factory, plan, spec)[-1]
    without = attack_update(ClientUpdate(**common), factory, plan, spec)[-1]
    assert with_loss.ok and without.ok
    lines = [s for s in with_loss.signals if s.startswith(SIGNAL)]
    assert len(lines) == 1 and f"{result.mean_loss:.4g}" in lines[0]
    assert not any(s.startswith(SIGNAL) for s in without.signals)
