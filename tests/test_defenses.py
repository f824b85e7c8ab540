"""Defenses: the pure mechanisms (known answers), Opacus' epsilon, what a DP client releases, training hooks."""

import math

import pytest
import torch
from torch import nn

from fedsim.core.defense import update as D
from fedsim.core.defense.registry import DefenseSection
from fedsim.core.defense.training import TrainingDefense
from fedsim.core.models import build_model


def _update(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(7, 5, generator=g, dtype=torch.float64),
            "b": torch.randn(13, generator=g, dtype=torch.float64) * 3}


def test_clipping_bounds_the_update_norm_and_keeps_small_updates():
    u = _update()
    assert D.global_norm(u) > 1.0
    clipped = D.clip_update(u, 1.0)
    assert D.global_norm(clipped) == pytest.approx(1.0, rel=1e-9)
    # direction kept
    assert torch.allclose(clipped["a"] / u["a"], torch.full_like(u["a"], 1.0 / D.global_norm(u)))
    small = D.clip_update(u, 1e6)
    assert all(torch.equal(small[k], u[k]) for k in u)


def test_noise_has_the_configured_std():
    z = {"w": torch.zeros(200_000, dtype=torch.float64)}
    noisy = D.add_gaussian_noise(z, 0.3, torch.Generator().manual_seed(1))["w"]
    # std of the sample std of N iid normals ~ sigma / sqrt(2N): 0.3/632 ~ 5e-4, test at ~6 sigma
    assert float(noisy.std()) == pytest.approx(0.3, abs=3e-3)
    assert abs(float(noisy.mean())) < 5 * 0.3 / math.sqrt(200_000)


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.33, 1.0])
def test_topk_keeps_exactly_k_per_tensor_and_globally(ratio):
    u = _update()
    u["tie"] = torch.ones(10, dtype=torch.float64)  # all equal magnitudes: still exactly k
    per = D.topk_sparsify(u, ratio, "tensor")
    for k, t in u.items():
        kk = math.ceil(ratio * t.numel())
        assert int((per[k] != 0).sum()) == kk
        kept = per[k][per[k] != 0].abs()
        dropped = t[per[k] == 0].abs()
        if len(dropped) and len(kept):
            assert float(kept.min()) >= float(dropped.max())
    glob = D.topk_sparsify(u, ratio, "global")
    n = sum(t.numel() for t in u.values())
    assert sum(int((t != 0).sum()) for t in glob.values()) == math.ceil(ratio * n)


def test_randk_keeps_exactly_k_and_quantization_uses_few_levels():
    u = _update()
    r = D.randk_sparsify(u, 0.2, "tensor", torch.Generator().manual_seed(0))
    for k, t in u.items():
        assert int((r[k] != 0).sum()) == math.ceil(0.2 * t.numel())
    q = D.quantize_update(u, 2)
    for k, t in q.items():
        assert len(torch.unique(t)) <= 4
        step = (u[k].max() - u[k].min()) / 3
        assert float((t - u[k]).abs().max()) <= float(step) / 2 + 1e-12


def test_defaults_leave_training_bit_identical():
    from fedsim.core.defense.registry import train_defended
    from fedsim.core.training import train_locally

    x = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(12) % 3
    kw = dict(algorithm="fedavg", lr=0.1, epochs=1, batch_size=4, seed=3, server_round=1, client_id=0, max_steps=0)
    m1 = build_model("convnet", (1, 8, 8), 3, seed=0, width=2)
    m2 = build_model("convnet", (1, 8, 8), 3, seed=0, width=2)
    train_locally(m1, x, y, **kw)
    _, extra = train_defended(DefenseSection(), m2, x, y, **kw)
    assert extra == {}
    assert all(torch.equal(m2.state_dict()[k], v) for k, v in m1.state_dict().items())


def test_label_smoothing_and_mixup_change_the_update():
    from fedsim.core.defense.registry import train_defended

    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 3
    kw = dict(algorithm="fedsgd", lr=0.1, epochs=1, batch_size=8, seed=3, server_round=1, client_id=0, max_steps=0)
    states = []
    for t in (TrainingDefense(), TrainingDefense(label_smoothing=0.3), TrainingDefense(mixup_alpha=1.0)):
        torch.manual_seed(0)
        model = build_model("convnet", (1, 8, 8), 3, seed=0, width=2)
        train_defended(DefenseSection(training=t), model, x, y, **kw)
        states.append(model.state_dict())
    for other in states[1:]:
        assert any(not torch.equal(states[0][k], other[k]) for k in states[0])


def test_opacus_epsilon_matches_its_rdp_accountant():
    from opacus.accountants import RDPAccountant

    from fedsim.core.defense.dp_sgd import dp_sgd_train

    x = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(40) % 3
    model = build_model("convnet", (1, 8, 8), 3, seed=0, width=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result, priv = dp_sgd_train(model, x, y, algorithm="fedavg", lr=0.1, epochs=1, batch_size=8, seed=1,
                                server_round=3, client_id=0, max_steps=0, noise=1.1, max_grad_norm=1.0, delta=1e-5)
    assert result.steps == 5 and priv["dp_sample_rate"] == pytest.approx(0.2)
    assert set(model.state_dict()) == set(before)  # no `_module.` prefix leaks into what is sent
    acc = RDPAccountant()
    acc.history = [(1.1, 0.2, 5)]
    assert priv["epsilon_round"] == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)
    acc3 = RDPAccountant()
    for _ in range(3):  # three rounds of five steps each, composed step by step
        for _ in range(5):
            acc3.step(noise_multiplier=1.1, sample_rate=0.2)
    assert priv["epsilon"] == pytest.approx(acc3.get_epsilon(1e-5), rel=1e-6)
    assert priv["epsilon"] > priv["epsilon_round"] > 0


def test_update_defenses_pipeline_is_seeded_and_ordered():
    u = _update()
    d = D.UpdateDefense(clip_norm=1.0, noise_std=0.01, topk_ratio=0.2)
    a = D.defend_update(u, d, torch.Generator().manual_seed(5))
    b = D.defend_update(u, d, torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in a)
    for k, t in a.items():
        assert int((t != 0).sum()) == math.ceil(0.2 * u[k].numel())


def test_dp_sgd_client_releases_no_realised_batch_size():
    """Poisson batches vary with the seed; what the client releases (num-examples) does not (issue 14.2)."""
    from fedsim.core.defense.dp_sgd import dp_sgd_train, released_examples

    x = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(40) % 3
    realised = set()
    for seed in range(4):
        model = build_model("convnet", (1, 8, 8), 3, seed=0, width=2)
        result, _ = dp_sgd_train(model, x, y, algorithm="fedsgd", lr=0.1, epochs=1, batch_size=8, seed=seed,
                                 server_round=1, client_id=0, max_steps=0, noise=1.0, max_grad_norm=1.0,
                                 delta=1e-5)
        realised.add(sum(len(b) for b in result.ground_truth.labels))
    assert len(realised) > 1  # the private quantity really varies
    # released: FedSGD the expected batch min(B, n), FedAvg the partition size n; never the draw
    assert released_examples("fedsgd", 40, 8) == 8 and released_examples("fedsgd", 5, 8) == 5
    assert released_examples("fedavg", 40, 8) == 40
