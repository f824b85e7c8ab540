"""The client's update defenses replayed on the server's shadow update (issue 24: an attack as strong as what the
server sees allows): the replay is the client's mechanism (same functions, the mods' order, LocalDpMod's noise
scale), the pipeline reads it from the capture's public defense record, and ig-shadow calibrates on a shadow
defended alike (a sparsified one matched on its sent coordinates)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from fedsim.attacks.defense_view import ShadowDefense, shadow_defense_from_record
from fedsim.core.accounting import local_dp_noise_multiplier
from fedsim.core.defense.local_dp import LocalDp
from fedsim.core.defense.update import UpdateDefense
from fedsim.core.defense.update import global_norm, topk_sparsify

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")


def _grads():
    g = torch.Generator().manual_seed(3)
    return [torch.randn(6, 5, generator=g), torch.randn(5, generator=g)]


def test_top_k_on_the_fake_gradient_is_top_k_of_the_update_and_keeps_exactly_k():
    grads = _grads()
    d = ShadowDefense(update=UpdateDefense(topk_ratio=0.2))
    out = d.on_fake_gradient(grads, lr=0.1, local_steps=2, seed=0)
    want = topk_sparsify({"a": grads[0], "b": grads[1]}, 0.2)
    assert torch.allclose(out[0], want["a"], atol=1e-6) and torch.allclose(out[1], want["b"], atol=1e-6)
    assert [int((t != 0).sum()) for t in out] == [math.ceil(0.2 * 30), math.ceil(0.2 * 5)]
    assert d.sparsifies
    assert not ShadowDefense(update=UpdateDefense(noise_std=0.1)).sparsifies


def test_local_dp_clips_the_update_to_c_then_adds_noise_of_std_c_z():
    grads = [torch.zeros(20_000)]
    ldp = LocalDp(enabled=True, clip_norm=0.5, epsilon=4.0, delta=1e-5)
    out = ShadowDefense(local_dp=ldp).on_fake_gradient(grads, lr=0.1, local_steps=1, seed=1)
    std = float((out[0] * 0.1).std())  # back in update units
    assert std == pytest.approx(0.5 * local_dp_noise_multiplier(4.0, 1e-5), rel=0.03)
    big = [torch.full((100,), 10.0)]
    clipped = ShadowDefense(update=UpdateDefense(clip_norm=0.3)).on_delta({"w": big[0]}, seed=0)
    assert global_norm(clipped) == pytest.approx(0.3, rel=1e-6)


def test_noise_draws_follow_the_seed_and_the_caller_keeps_its_tensors():
    grads = _grads()
    before = [g.clone() for g in grads]
    d = ShadowDefense(update=UpdateDefense(noise_std=0.01))
    a, b = (d.on_fake_gradient(grads, lr=0.1, local_steps=1, seed=s) for s in (5, 5))
    c = d.on_fake_gradient(grads, lr=0.1, local_steps=1, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], c[0])
    assert all(torch.equal(x, y) for x, y in zip(grads, before))


def test_the_record_gives_the_defenses_in_force_or_none():
    assert shadow_defense_from_record({}) is None
    assert shadow_defense_from_record({"defense.update.topk_ratio": 0.0}) is None  # off
    d = shadow_defense_from_record({"defense.update.topk_ratio": 0.1, "defense.local_dp.enabled": True,
                                    "defense.local_dp.epsilon": 2.0})
    assert d.update.topk_ratio == 0.1 and d.local_dp.epsilon == 2.0
    assert d.describe() == "top-k 0.1 + LocalDpMod clip 1, epsilon 2"
    assert shadow_defense_from_record({"defense.dp_sgd.enabled": True}) is None  # not an update defense


def test_ig_shadow_attacks_a_defended_shadow_and_a_sparsified_one_on_its_sent_coordinates(monkeypatch):
    from fedsim.attacks.inversion import shadow
    from fedsim.attacks.gradients import batch_gradient
    from fedsim.core.models.zoo import build_model

    seen = []
    real = shadow.tv_grid_as_restarts

    def spy(weights, **call):
        seen.append((call["gradients"], call.get("distance")))
        return real(weights, **call)

    monkeypatch.setattr(shadow, "tv_grid_as_restarts", spy)
    shape = (1, 8, 8)
    model = build_model("convnet", shape, 4, seed=0, width=4)
    g = torch.Generator().manual_seed(7)
    aux = (torch.rand(8, *shape, generator=g), torch.arange(8) % 4)
    victim, y = torch.rand(2, *shape, generator=g), torch.tensor([0, 1])
    grads = [t.detach() for t in batch_gradient(model, victim, y)]
    d = ShadowDefense(update=UpdateDefense(topk_ratio=0.1))
    trace = shadow.ig_shadow(model=model, gradients=d.on_fake_gradient(grads, lr=0.1, local_steps=1, seed=0),
                             labels=y, input_shape=shape, steps=4, aux=aux, tv_grid=(0.2, 2.0), return_result=True,
                             lr=0.1, local_steps=1, local_batch_size=2, shadow_defense=d, extend_edges=0)
    target, distance = seen[0]
    n = sum(t.numel() for t in target)
    assert sum(int((t != 0).sum()) for t in target) == sum(math.ceil(0.1 * t.numel()) for t in target) < n
    assert distance == "cosine-masked" and trace.options["distance"] == "cosine-masked"
    assert trace.options["shadow_defense"] == "top-k 0.1"


def test_the_pipeline_supplies_the_defense_settings_from_the_capture(tmp_path):
    from fedsim.attacks.pipeline import attack_update
    from fedsim.core.captures import iter_captures, load_update
    from fedsim.core.experiment import make_model
    from fedsim.evaluation.attacking import data_spec, plan_from_config
    from tests.runfolder import make_run

    cfg, run = make_run(tmp_path / "run", **{"attack.inversion": "ig-shadow", "attack.inversion_steps": 2})
    update = load_update(next(iter_captures(run)))
    defended = dataclasses.replace(update, defenses={"defense.update.topk_ratio": 0.5})
    plan = plan_from_config(cfg)
    spec = data_spec(cfg, plan)
    inv = attack_update(defended, lambda: make_model(cfg), plan, spec)[-1]
    assert inv.ok, inv.error
    assert "defense settings: top-k 0.5 (simulated on the shadow update)" in inv.signals
    assert any("(defended as the client's)" in s and "sent coordinates only" in s for s in inv.signals)
    clean = attack_update(update, lambda: make_model(cfg), plan, spec)[-1]
    assert not any(s.startswith("defense settings") for s in clean.signals)
