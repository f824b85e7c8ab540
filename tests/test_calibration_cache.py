"""ig-shadow's calibration cache (issue 36 part 3): the attacked updates of one round (one global model, one
schedule) share one shadow calibration; another schedule, model state or defense is another calibration; the
calibration is a function of its key alone (never of the client's restored labels), and the runner owns the cache."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import fedsim.attacks.inversion.shadow as shadow
from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import INVERSION_METHODS, invert
from fedsim.attacks.inversion.calibration import CalibrationCache, calibration_key, model_digest
from fedsim.core.models.zoo import build_model

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")
SHAPE = (1, 8, 8)
FAST = dict(steps=3, tv_grid=(0.2, 1.0), lr_grid=(0.1, 0.3), extend_edges=0, input_shape=SHAPE, return_result=True)


def _aux(n: int = 16, classes: int = 4):
    g = torch.Generator().manual_seed(7)
    return torch.rand(n, *SHAPE, generator=g), torch.arange(n) % classes


def _client(model, seed: int, labels: list[int]):
    """A client's FedSGD update (batch-mean gradient) on its own images with ``labels``."""
    x = torch.rand(len(labels), *SHAPE, generator=torch.Generator().manual_seed(seed))
    y = torch.tensor(labels)
    return batch_gradient(model, x, y), y


@pytest.fixture
def calls(monkeypatch):
    """Counts the shadow grids ig-shadow runs (one choose_tv per step size per calibration)."""
    seen = []
    real = shadow.choose_tv

    def counted(**kw):
        seen.append(kw["attack_lr"])
        return real(**kw)

    monkeypatch.setattr(shadow, "choose_tv", counted)
    return seen


def _attack(model, grads, labels, cache, **over):
    return invert("ig-shadow", model=model, gradients=grads, labels=labels, aux=_aux(), calibration_cache=cache,
                  **{**FAST, "lr": 0.1, "local_steps": 1, "local_batch_size": len(labels), **over})


def test_k_updates_of_one_round_calibrate_once(calls):
    """Three clients of one round (same model, schedule; different images and labels): one calibration (two
    step sizes = two shadow grids), reused twice; without a cache each update calibrates (two grids each)."""
    model = build_model("convnet", SHAPE, 4, seed=0, width=4)
    clients = [_client(model, s, lab) for s, lab in ((1, [0, 1]), (2, [2, 2]), (3, [3, 1]))]
    cache = CalibrationCache()
    traces = [_attack(model, g, y, cache) for g, y in clients]
    assert len(calls) == 2 and (cache.misses, cache.hits, len(cache)) == (1, 2, 1)
    assert [t.options["calibration_reused"] for t in traces] == [False, True, True]
    assert len({(t.options["tv_chosen"], t.options["attack_lr_chosen"]) for t in traces}) == 1
    calls.clear()
    alone = [_attack(model, g, y, None) for g, y in clients[:2]]
    assert len(calls) == 4 and all("calibration_reused" not in t.options for t in alone)


@dataclass(frozen=True)
class NoisyShadow:
    """A stand-in for the update defense the attacker simulates on its shadow (``ShadowDefense``'s interface)."""

    noise_std: float
    sparsifies: bool = False

    def describe(self) -> str:
        return f"update noise {self.noise_std:g}"

    def on_fake_gradient(self, grads, *, lr, local_steps, seed):
        g = torch.Generator().manual_seed(seed)
        return [t + self.noise_std * torch.randn(t.shape, generator=g) for t in grads]


def test_another_schedule_model_state_or_defense_misses(calls):
    model = build_model("convnet", SHAPE, 4, seed=0, width=4)
    grads, y = _client(model, 1, [0, 1])
    cache = CalibrationCache()
    _attack(model, grads, y, cache)
    _attack(model, grads, y, cache, lr=0.05)  # another client lr
    _attack(model, grads, y, cache, local_steps=2, local_batch_size=1)  # FedAvg schedule
    moved = build_model("convnet", SHAPE, 4, seed=0, width=4)
    with torch.no_grad():
        next(moved.parameters())[0].flatten()[0] += 1e-3  # the next round's model: one weight moved
    assert model_digest(moved) != model_digest(model)
    _attack(moved, grads, y, cache)
    _attack(model, grads, y, cache, shadow_defense=NoisyShadow(0.01))
    assert cache.hits == 0 and cache.misses == len(cache) == 5
    _attack(model, grads, y, cache)  # the first setting again: a hit
    assert cache.hits == 1


def test_calibration_is_a_function_of_the_key_not_of_who_came_first():
    """With a cache the shadow batch is drawn without the restored labels: the calibration a round gets is the
    same whichever client is attacked first (no client's labels enter it)."""
    model = build_model("convnet", SHAPE, 4, seed=0, width=4)
    a, b = _client(model, 1, [0, 0]), _client(model, 2, [3, 2])
    first_a, first_b = CalibrationCache(), CalibrationCache()
    ta = _attack(model, *a, first_a)
    tb = _attack(model, *b, first_b)
    assert (ta.options["tv_chosen"], ta.options["attack_lr_chosen"], ta.options["tv_shadow_psnr"]) == \
        (tb.options["tv_chosen"], tb.options["attack_lr_chosen"], tb.options["tv_shadow_psnr"])


def test_key_covers_the_settings_and_refuses_what_it_cannot_describe():
    model = build_model("convnet", SHAPE, 4, seed=0, width=4)
    base = dict(k=2, schedule={"lr": 0.1, "local_steps": 1}, seed=0, tv_grid=(0.2, 1.0))
    key = calibration_key(model, **base)
    assert key == calibration_key(model, **dict(base))
    for change in ({"k": 3}, {"seed": 1}, {"tv_grid": (0.2, 2.0)}, {"schedule": {"lr": 0.1, "local_steps": 2}}):
        assert calibration_key(model, **{**base, **change}) != key, change
    with pytest.raises(TypeError, match="no calibration key"):
        calibration_key(model, **base, callback=object())


def test_ig_shadow_takes_the_cache_from_the_pipeline():
    """The pipeline hands the runner's cache to the methods that list the need (ig-shadow), and to no other."""
    from fedsim.attacks.pipeline import DataSpec, need_options
    from fedsim.core.types import ClientUpdate

    assert "calibration cache" in INVERSION_METHODS["ig-shadow"].needs
    update = ClientUpdate(run_id="t", server_round=1, client_id=0, algorithm="fedsgd",
                          weights_before={"w": torch.zeros(2)}, weights_after={"w": torch.ones(2)}, lr=0.1, local_epochs=1, local_steps=1, batch_size=2, num_examples=2)
    data = DataSpec(SHAPE, 4, (0.0,), (1.0,), public_aux=_aux())
    cache = CalibrationCache()
    assert need_options(INVERSION_METHODS["ig-shadow"], update, 2, data, {}, cache)["calibration_cache"] is cache
    assert "calibration_cache" not in need_options(INVERSION_METHODS["ig"], update, 2, data, {}, cache)
    assert "calibration_cache" not in need_options(INVERSION_METHODS["ig-shadow"], update, 2, data, {}, None)


SHADOW_RUN = {"attack.inversion": "ig-shadow", "attack.inversion_steps": 2, "attack.label_methods": "ilrg"}


def _calibrations(rows) -> list[str]:
    """'computed' / 'reused' per inversion row, from its shadow-calibration signal."""
    out = []
    for r in rows:
        line = next((s for s in (getattr(r, "signals", None) or []) if s.startswith("shadow calibration")), "")
        out.append("reused" if "reused" in line else "computed" if "calibrated here" in line else line)
    return out


@pytest.mark.slow
def test_a_replay_calibrates_once_per_round(tmp_path):
    """`fedsim attack` on one round of three clients: the replay's cache serves clients 1 and 2."""
    from fedsim.core.rows import InversionRow
    from fedsim.core.runfolder import RunFolder
    from fedsim.lab.replay import replay_attacks
    from tests.runfolder import make_run

    _, run = make_run(tmp_path / "run")
    assert replay_attacks(run, SHADOW_RUN, quiet=True) == 3
    rows = sorted(RunFolder(run).rows(InversionRow), key=lambda r: r.client)
    assert [r.ok for r in rows] == [True] * 3
    assert _calibrations(rows) == ["computed", "reused", "reused"]


def test_lanes_keep_a_round_together_and_spread_rounds():
    """A round's updates go to the lane its first took; a new round takes the lane with fewer unfinished attacks."""
    from concurrent.futures import Future

    from fedsim.server.scheduler import RoundLanes

    lanes = RoundLanes(2)  # no process starts before a submit
    try:
        assert lanes.lane(1) == 0
        lanes.futures[0] = [Future(), Future()]  # round 1's two attacks, unfinished
        assert lanes.lane(1) == 0 and lanes.lane(2) == 1
        lanes.futures[1] = [Future() for _ in range(3)]
        assert lanes.lane(3) == 0 and lanes.lane(2) == 1
    finally:
        lanes.shutdown()


@pytest.mark.slow
def test_the_live_scheduler_workers_calibrate_once_per_round(tmp_path):
    """attack.workers = 2 (spawned lane processes): the three updates of a round share one worker's calibration."""
    from fedsim.core.captures import load_update
    from fedsim.core.rows import InversionRow
    from fedsim.core.runfolder import RunFolder
    from fedsim.server.scheduler import AttackScheduler
    from tests.runfolder import make_run

    cfg, run = make_run(tmp_path / "run", **SHADOW_RUN, **{"attack.workers": 2})
    scheduler = AttackScheduler(cfg, run)
    for path in sorted((run / "captures").rglob("client_*.safetensors")):
        scheduler(load_update(path))
    scheduler.close()
    rows = sorted(RunFolder(run).rows(InversionRow), key=lambda r: r.client)
    assert [r.ok for r in rows] == [True] * 3
    assert _calibrations(rows) == ["computed", "reused", "reused"]
