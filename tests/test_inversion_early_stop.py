"""Early stopping on a plateau of the engine's own matching loss, and restarts picked by that loss (issue 24):
stops before the budget on a converged problem, not on one still improving; off = the engine as before."""

from __future__ import annotations

import math

import pytest
import torch

from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import invert
from fedsim.attacks.inversion.core import BestTracker
from fedsim.attacks.inversion.early_stop import EarlyStop, Plateau, as_early_stop
from fedsim.attacks.inversion.objectives import gradient_distance
from fedsim.core.models.zoo import build_model

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")
SHAPE = (1, 8, 8)


def _case(k: int = 1):
    model = build_model("lenet5", SHAPE, 10, seed=1, activation="sigmoid")
    x = torch.rand(k, *SHAPE, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([3, 5, 7][:k])
    return model, [g.detach() for g in batch_gradient(model, x, y)], y


def _run(method: str, steps: int, **kw):
    model, grads, y = _case()
    return invert(method, model=model, gradients=grads, labels=y, input_shape=SHAPE, steps=steps, seed=0,
                  return_result=True, **kw)


def test_plateau_rule_on_known_sequences():
    rule = EarlyStop(patience=3, rel_tol=0.01)
    flat = Plateau(rule)
    assert [flat.update(1.0, s) for s in range(4)] == [False, False, False, True]  # 3 steps without 1 % gain
    falling = Plateau(rule)
    assert not any(falling.update(0.9 ** s, s) for s in range(200))  # 10 % per step: never a plateau
    slow = Plateau(rule)
    assert any(slow.update(0.999 ** s, s) for s in range(200))  # 0.1 % per step < 1 %: a plateau
    late = Plateau(EarlyStop(patience=2, rel_tol=0.01, min_steps=10))
    assert [late.update(1.0, s) for s in range(10)].index(True) == 9  # never before min_steps


def test_next_phase_applies_the_next_milestone_once():
    x = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.1)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[5, 8], gamma=0.1)
    p = Plateau(EarlyStop())
    assert p.next_phase(sched, opt) and math.isclose(opt.param_groups[0]["lr"], 0.01)
    for _ in range(6):  # past the dropped milestone 5: no second drop there
        opt.step()
        sched.step()
    assert math.isclose(opt.param_groups[0]["lr"], 0.01)
    assert p.next_phase(sched, opt) and not p.next_phase(sched, opt) and p.lr_drops == 2
    assert not Plateau(EarlyStop()).next_phase(None, opt)  # no schedule: the caller stops


def test_stops_before_the_budget_on_a_converged_problem():
    full = _run("geng", 100)
    early = _run("geng", 100, early_stop={"patience": 5, "rel_tol": 1e-3})
    assert full.steps == 100 and full.stop_reason == "budget"
    assert early.stop_reason == "plateau" and early.steps < 80
    assert early.options["early_stop"] == {"patience": 5, "rel_tol": 1e-3, "min_steps": 0}
    # stopped on a floor: the matching loss is as small (relative to its start) as with the full budget
    assert early.best_loss <= 1e-10 and full.best_loss <= 1e-10


def test_does_not_stop_while_still_improving():
    trace = _run("ig", 250, early_stop=True)  # signed Adam on a smooth LeNet keeps improving for 250 steps
    assert trace.steps == 250 and trace.stop_reason == "budget"


def test_disabled_is_bitwise_the_engine_without_the_option():
    base = _run("ig", 60)
    for off in (None, False):
        assert torch.equal(_run("ig", 60, early_stop=off).inputs, base.inputs)
    never = _run("ig", 60, early_stop={"patience": 1000})  # the rule runs but never fires
    assert torch.equal(never.inputs, base.inputs) and never.steps == 60 and base.stop_reason == "budget"
    assert "early_stop" not in base.options


def test_bad_early_stop_values_raise():
    with pytest.raises(ValueError, match="patience"):
        as_early_stop({"patience": 0})
    with pytest.raises(ValueError, match="early_stop"):
        as_early_stop("yes")


def test_best_tracker_keeps_the_lowest_finite_loss_per_restart():
    x = torch.zeros(3, 1, 1, 2, 2)
    t = BestTracker(x)
    t.update(torch.tensor([0.5, float("nan"), 0.2]), x + 1)
    t.update(torch.tensor([0.1, 0.3, float("inf")]), x + 2)
    g, loss, best = t.best()
    assert g == 0 and loss == pytest.approx(0.1) and torch.equal(best, x[0] + 2)
    assert float(t.loss[1]) == pytest.approx(0.3) and torch.equal(t.x[2], x[2] + 1)


def test_restarts_return_the_restart_with_the_lowest_own_matching_loss():
    model, grads, y = _case(k=2)
    trace = invert("ig", model=model, gradients=grads, labels=y, input_shape=SHAPE, steps=30, seed=0, restarts=3,
                   return_result=True)
    labels = trace.labels
    own = float(gradient_distance(batch_gradient(model, trace.inputs, labels), grads, "cosine"))
    assert own == pytest.approx(trace.best_loss, rel=1e-3, abs=1e-7)


def test_batched_ig_auto_matches_separate_runs_criterion_and_pick():
    from fedsim.attacks.inversion.autotune import ig_auto

    model = build_model("convnet", SHAPE, 4, seed=0, width=4)
    x = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([1, 3])
    grads = [t.detach() for t in batch_gradient(model, x, y)]
    kw = dict(model=model, gradients=grads, labels=y, input_shape=SHAPE, steps=40, seed=1, tv_grid=(0.0, 0.5, 50.0),
              return_result=True)
    sep, bat = ig_auto(**kw), ig_auto(batched=True, **kw)
    assert bat.options["tv_chosen"] == sep.options["tv_chosen"] == min(bat.options["tv_criterion"],
                                                                       key=bat.options["tv_criterion"].get)
    for tv, loss in sep.options["tv_criterion"].items():  # same start, own weight: the separate run's number
        assert bat.options["tv_criterion"][tv] == pytest.approx(loss, rel=1e-4)
    assert bat.best_loss == pytest.approx(sep.best_loss, rel=1e-4)


def test_shared_init_starts_every_restart_at_the_single_run_point():
    model, grads, y = _case()
    kw = dict(model=model, gradients=grads, labels=y, input_shape=SHAPE, seed=0, return_result=True, box=False,
              attack_lr=1e-12)  # ~no movement: the returned point is the start
    one = invert("ig", steps=1, **kw).inputs
    same = invert("ig", steps=1, restarts=3, shared_init=True, restart_regularizers=[{"tv": 1.0}] * 3, **kw)
    losses = torch.tensor(same.options["restart_losses"], dtype=torch.float64)
    # one start point: equal losses up to float32 rounding (a vmapped batch may round lanes differently: seen at
    # 1.2e-7 relative on one CPU); different starts differ by far more than that
    assert torch.allclose(same.inputs, one, atol=1e-9) and float((losses.max() - losses.min()) / losses.min()) < 1e-5
    apart = invert("ig", steps=1, restarts=3, restart_regularizers=[{"tv": 1.0}] * 3, **kw)
    spread = torch.tensor(apart.options["restart_losses"], dtype=torch.float64)
    assert float((spread.max() - spread.min()) / spread.min()) > 1e-3
    with pytest.raises(ValueError, match="restart_regularizers"):
        invert("ig", steps=1, restarts=2, restart_regularizers=[{"tv": 1.0}], **kw)
