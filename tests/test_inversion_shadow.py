"""ig-shadow (issue 24): the TV weight is calibrated on an update the server simulates from its own public images at
the client's schedule; the simulation is the client's update, the pick is the best shadow PSNR, the real run is
``ig`` at that weight, and the pipeline supplies the public split (or skips the method without one)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import INVERSION_METHODS, invert
from fedsim.attacks.inversion.shadow import aligned_psnr, ig_shadow, shadow_batch, simulate_update
from fedsim.core.errors import AttackNotApplicable
from fedsim.core.models.zoo import build_model

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")
SHAPE = (1, 8, 8)


def _aux(n: int = 12, classes: int = 4):
    g = torch.Generator().manual_seed(7)
    return torch.rand(n, *SHAPE, generator=g), torch.arange(n) % classes


def test_shadow_batch_takes_the_restored_classes_where_the_public_split_has_them():
    aux = _aux()  # labels 0,1,2,3 three times each
    x, y = shadow_batch(aux, torch.tensor([1, 1, 3]), 3, seed=0)
    assert y.tolist() == [1, 1, 3]
    assert len({tuple(v.flatten().tolist()) for v in x}) == 3  # without replacement
    x2, y2 = shadow_batch(aux, torch.tensor([9, 9]), 2, seed=0)  # class 9 absent: random images, their own labels
    assert all(any(torch.equal(a, b) and int(c) == int(d) for b, d in zip(*aux)) for a, c in zip(x2, y2))
    again = shadow_batch(aux, torch.tensor([1, 1, 3]), 3, seed=0)
    assert torch.equal(again[0], x)  # seeded
    with pytest.raises(AttackNotApplicable, match="needs 20 public images"):
        shadow_batch(aux, None, 20, seed=0)


def test_simulated_update_is_the_fedsgd_gradient_and_the_fedavg_fake_gradient():
    model = build_model("convnet", SHAPE, 4, seed=0, width=4)
    x, y = _aux(4)
    sgd = simulate_update(model, x, y)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(sgd, batch_gradient(model, x, y)))
    # FedAvg: 3 SGD steps over batches of 2 (cycling), as a client with torch.optim.SGD trains
    local = copy.deepcopy(model)
    w0 = [p.detach().clone() for p in local.parameters()]
    opt = torch.optim.SGD(local.parameters(), lr=0.05)
    for t in range(3):
        b = slice((t % 2) * 2, (t % 2) * 2 + 2)
        opt.zero_grad()
        F.cross_entropy(local(x[b]), y[b]).backward()
        opt.step()
    want = [(a - b.detach()) / (3 * 0.05) for a, b in zip(w0, local.parameters())]
    got = simulate_update(model, x, y, local_steps=3, lr=0.05, local_batch_size=2)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), w0))  # the caller's model untouched
    with pytest.raises(ValueError, match="needs the client's lr"):
        simulate_update(model, x, y, local_steps=3)


def test_the_pick_is_the_best_shadow_psnr_and_the_real_run_is_ig_at_that_weight():
    model = build_model("lenet5", SHAPE, 4, seed=1, activation="sigmoid")
    aux = _aux()
    victim = torch.rand(1, *SHAPE, generator=torch.Generator().manual_seed(99))
    y = torch.tensor([2])
    grads = [g.detach() for g in batch_gradient(model, victim, y)]
    grid = (0.0, 1e4)  # 1e4: the prior flattens the image, the shadow PSNR must show it
    trace = ig_shadow(model=model, gradients=grads, labels=y, input_shape=SHAPE, steps=60, seed=0, aux=aux,
                      tv_grid=grid, return_result=True, lr=0.1, local_steps=1, local_batch_size=1)
    psnr = trace.options["tv_shadow_psnr"]
    assert set(psnr) == set(grid) and trace.options["tv_chosen"] == max(psnr, key=psnr.get) == 0.0
    assert psnr[0.0] > psnr[1e4] + 3.0
    by_lr = trace.options["lr_shadow_psnr"]
    assert set(by_lr) == {0.1, 0.3, 1.0} and trace.options["attack_lr_chosen"] == max(by_lr, key=by_lr.get)
    assert by_lr[trace.options["attack_lr_chosen"]] == psnr[0.0]  # the TV scores are those of the chosen step size
    alone = invert("ig", model=model, gradients=grads, labels=y, input_shape=SHAPE, steps=60, seed=0,
                   regularizers={"tv": 0.0}, attack_lr=trace.options["attack_lr_chosen"])
    assert torch.equal(trace.inputs, alone)
    fixed = ig_shadow(model=model, gradients=grads, labels=y, input_shape=SHAPE, steps=60, seed=0, aux=aux,
                      tv_grid=grid, return_result=True, lr=0.1, local_steps=1, local_batch_size=1, attack_lr=0.05)
    assert set(fixed.options["lr_shadow_psnr"]) == {0.05} and fixed.options["attack_lr_chosen"] == 0.05
    assert aligned_psnr(alone, victim, (0.0,), (1.0,)) > aligned_psnr(torch.full_like(victim, 0.5), victim,
                                                                       (0.0,), (1.0,))


def test_ig_shadow_without_a_public_split_does_not_apply_and_refuses_a_fixed_weight():
    model = build_model("convnet", SHAPE, 4, seed=0, width=4)
    x, y = _aux(2)
    grads = [g.detach() for g in batch_gradient(model, x, y)]
    with pytest.raises(AttackNotApplicable, match="public split"):
        ig_shadow(model=model, gradients=grads, labels=y, input_shape=SHAPE, steps=2)
    with pytest.raises(ValueError, match="chooses the TV weight"):
        ig_shadow(model=model, gradients=grads, labels=y, input_shape=SHAPE, steps=2, aux=_aux(),
                  regularizers={"tv": 1.0})
    assert set(INVERSION_METHODS["ig-shadow"].needs) == {"public split", "client schedule", "defense settings",
                                                         "calibration cache"}


def test_the_live_pipeline_gives_ig_shadow_the_public_split(tmp_path):
    from fedsim.attacks.pipeline import attack_update
    from fedsim.core.captures import iter_captures, load_update
    from fedsim.core.experiment import make_model
    from fedsim.evaluation.attacking import data_spec, plan_from_config
    from tests.runfolder import make_run

    cfg, run = make_run(tmp_path / "run", **{"attack.inversion": "ig-shadow", "attack.inversion_steps": 3})
    update = load_update(next(iter_captures(run)))
    plan = plan_from_config(cfg)
    spec = data_spec(cfg, plan)
    assert spec.public_aux is not None  # the inversion method needs it, no label method does
    inv = attack_update(update, lambda: make_model(cfg), plan, spec)[-1]
    assert inv.method == "ig-shadow" and inv.ok, inv.error
    assert "public split" in inv.signals
    assert any(line.startswith("shadow calibration: TV ") for line in inv.signals), inv.signals
    plain = data_spec(cfg.replace(**{"attack.inversion": "ig"}))
    assert plain.public_aux is None  # nothing loaded for methods that do not need it


def test_a_fixed_tv_weight_with_a_self_tuned_method_is_a_config_error(tmp_path):
    from fedsim.core.errors import ConfigError
    from fedsim.evaluation.attacking import plan_from_config
    from tests.runfolder import make_run

    cfg, _ = make_run(tmp_path / "run", **{"attack.inversion": "ig-shadow", "attack.inversion_steps": 3})
    for method in ("ig-shadow", "ig-auto", "analytic-fc"):
        with pytest.raises(ConfigError, match=r"attack.inversion_tv: .* use -1, or one of .*\big\b"):
            plan_from_config(cfg.replace(**{"attack.inversion": method, "attack.inversion_tv": 1.0}))
    assert plan_from_config(cfg.replace(**{"attack.inversion": "ig", "attack.inversion_tv": 1.0})
                            ).inversion_options == {"regularizers": {"tv": 1.0}}


def test_a_batched_grid_returns_every_restarts_best_iterate_and_both_grid_modes_pick_alike():
    from fedsim.attacks.inversion.shadow import choose_tv

    model = build_model("lenet5", SHAPE, 4, seed=1, activation="sigmoid")
    x, y = _aux(2)
    grads = [g.detach() for g in batch_gradient(model, x, y)]
    grid = [0.0, 0.5, 1e4]
    trace = invert("ig", model=model, gradients=grads, labels=y, input_shape=SHAPE, steps=30, seed=0,
                   regularizers={"tv": 0.0}, restarts=3, shared_init=True,
                   restart_regularizers=[{"tv": tv} for tv in grid], return_result=True)
    every, losses = trace.options["restart_inputs"], trace.options["restart_losses"]
    assert every.shape == (3, 2, *SHAPE) and len(losses) == 3
    assert torch.equal(every[min(range(3), key=losses.__getitem__)], trace.inputs)
    assert float(every.min()) >= 0.0 and float(every.max()) <= 1.0  # box-clamped like the returned iterate
    picks = [choose_tv(model=model, aux=_aux(), labels=y, k=2, input_shape=SHAPE, steps=60, mean=(0.0,), std=(1.0,),
                       seed=0, tv_grid=(0.0, 1e4), batched=b) for b in (True, False)]
    assert picks[0][0] == picks[1][0] == 0.0
    assert all(p[1][0.0] > p[1][1e4] + 3.0 for p in picks)


@pytest.mark.parametrize("best, extend, chosen, tried", [
    (0.003, 0, 0.02, {0.02, 0.2, 2.0}),
    (0.003, 1, 0.004, {0.004, 0.01, 0.02, 0.2, 2.0}),
    (0.003, 2, 0.004, {0.0008, 0.002, 0.004, 0.01, 0.02, 0.2, 2.0}),  # 0.004 is inside after two: no third
    (30.0, 5, 20.0, {0.02, 0.2, 2.0, 4.0, 10.0, 20.0, 50.0}),
    (0.5, 2, 0.2, {0.02, 0.2, 2.0}),  # an inside pick widens nothing
])
def test_an_edge_pick_widens_the_grid_past_that_edge_until_the_pick_is_inside(monkeypatch, best, extend, chosen,
                                                                              tried):
    import math
    from types import SimpleNamespace

    from fedsim.attacks.inversion import shadow

    calls = []

    def fake_grid(weights, **call):  # each restart's "reconstruction" carries its weight; one call per batch
        calls.append(list(weights))
        return SimpleNamespace(options={"restart_inputs": [torch.full((1, *SHAPE), tv) for tv in weights]})

    # the shadow PSNR peaks at `best` on a log scale: the weight nearest to it in log distance wins
    monkeypatch.setattr(shadow, "tv_grid_as_restarts", fake_grid)
    monkeypatch.setattr(shadow, "aligned_psnr", lambda xh, x, m, s: -abs(math.log(float(xh.mean()) / best)))
    model = build_model("convnet", SHAPE, 4, seed=0, width=4)
    pick, psnr = shadow.choose_tv(model=model, aux=_aux(), labels=torch.tensor([1]), k=1, input_shape=SHAPE, steps=1,
                                  mean=(0.0,), std=(1.0,), seed=0, tv_grid=(0.02, 0.2, 2.0), extend_edges=extend)
    assert pick == chosen and set(psnr) == tried
    assert pick == max(psnr, key=psnr.get)
    assert calls[0] == [0.02, 0.2, 2.0] and all(len(c) == 2 for c in calls[1:])  # each widening: one batched call
    assert len(calls) - 1 <= extend
