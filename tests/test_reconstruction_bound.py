"""The DP reconstruction bound (fedsim.core.reconstruction_bound), its Clopper-Pearson intervals, the loud failure
of a measured rate above its bound, and the ORACLE-PRIOR attack (fedsim.evaluation.prior_aware) on a tiny case."""

from __future__ import annotations

import math

import pytest
import torch

from fedsim.core.errors import FedsimError
from fedsim.core.reconstruction_bound import (BoundViolation, Measured, Mechanism, clopper_pearson, gdp_bound,
                                              reconstruction_bound)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("kappa", [0.1, 1 / 64])
def test_gaussian_bound_equals_the_mu_gdp_closed_form(sigma, kappa):
    """The Gaussian mechanism (sensitivity 1, std sigma) is mu-GDP with mu = 1 / sigma, so
    1 - f(kappa) = 1 - Phi(Phi^-1(1 - kappa) - mu); the PLD (pessimistic) bound is never below it."""
    got = reconstruction_bound(Mechanism(sigma), kappa)
    want = gdp_bound(1 / sigma, kappa)
    assert want - 1e-9 <= got <= want + 2e-3


def test_replace_one_sensitivity_two_is_mu_two_over_sigma():
    got = reconstruction_bound(Mechanism(2.0, sensitivity=2.0, relation="replace-one"), 0.05)
    assert got == pytest.approx(gdp_bound(1.0, 0.05), abs=2e-3)


def test_bound_falls_with_noise_and_reaches_chance():
    kappa = 1 / 32
    bounds = [reconstruction_bound(Mechanism(s, sample_rate=0.25, steps=2), kappa) for s in (0.6, 1, 2, 4, 8)]
    assert all(a > b for a, b in zip(bounds, bounds[1:]))
    assert reconstruction_bound(Mechanism(math.inf, sample_rate=0.25), kappa) == kappa
    assert reconstruction_bound(Mechanism(1e3), kappa) == pytest.approx(kappa, abs=1e-3)
    assert bounds[-1] >= kappa


def test_no_noise_is_no_privacy_except_for_sampling():
    assert reconstruction_bound(Mechanism(0.0), 0.1) == 1.0
    # target never sampled in 2 steps with probability 0.75^2: then a blind guess
    assert reconstruction_bound(Mechanism(0.0, sample_rate=0.25, steps=2), 0.1) == pytest.approx(
        1 - 0.75 ** 2 * 0.9)
    # sampling amplifies: the same noise with q < 1 bounds lower
    assert reconstruction_bound(Mechanism(1.0, sample_rate=0.1), 0.1) < reconstruction_bound(Mechanism(1.0), 0.1)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="relation"):
        Mechanism(1.0, relation="swap")
    with pytest.raises(ValueError, match="kappa"):
        reconstruction_bound(Mechanism(1.0), 0.0)


def test_clopper_pearson_known_answers():
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)  # 0.3085
    lo, hi = clopper_pearson(5, 10)
    assert (lo, hi) == pytest.approx((0.187086, 0.812914), abs=1e-6)
    assert clopper_pearson(10, 10)[1] == 1.0


def _planted(hits, trials, bound, kappa=1 / 64):
    from fedsim.core.rows import OraclePriorRow

    return OraclePriorRow(round=1, client=0, method="oracle-prior", ok=True, targets=trials, hits=hits,
                          success=hits / trials, kappa=kappa, candidates=64, bound=bound)


def test_a_rate_above_its_bound_fails_the_sweep_in_one_line(tmp_path):
    """A planted ORACLE-PRIOR row re-identifying 40 of 64 targets where the bound says 10 %: the sweep's summary
    (rows -> per-run tallies -> pooled point -> check) raises a one-line FedsimError (exit 1); a row within
    its bound passes, and so does one above the bound but inside its interval."""
    from fedsim.core.runfolder import RunFolder
    from fedsim.lab.sweep.bound import aggregate_bounds, check_rows, run_tallies

    def point(hits, trials, bound, name):
        run = tmp_path / name
        RunFolder(run).append(_planted(hits, trials, bound))
        row = {"label": name}
        aggregate_bounds(row, [run_tallies(run, [])])
        return row

    check_rows([point(5, 64, 0.10, "within")])
    check_rows([point(9, 64, 0.10, "noise")])  # 14 % measured, CP low 6.6 % < 10 %: not a violation
    with pytest.raises(BoundViolation) as info:
        check_rows([point(40, 64, 0.10, "planted")])
    msg = str(info.value)
    assert "\n" not in msg and "planted" in msg and "above the DP bound 10 %" in msg
    assert isinstance(info.value, FedsimError) and info.value.exit_code == 1


def test_report_line_reads_like_a_sentence():
    line = Measured("re-identified", 0, 120, 0.14, 1 / 64).line()
    assert line == "re-identified 0 % [0, 3 %] of 120, bound 14 % (chance 1.6 %)"


# ---- the ORACLE-PRIOR attack on a tiny case --------------------------------------------------------------------
def _tiny(sigma: float, seed: int, n: int = 16, k: int = 16, q_all: bool = True):
    """A 2-layer MLP on 8-dim inputs; one DP-SGD step over n examples (all in the batch), clip 1, noise sigma;
    the released weights, then the attack through released_sum like the live one."""
    from fedsim.evaluation.prior_aware import per_example_gradients, prior_aware_guess, released_sum

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    x, y = torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
    dx, dy = torch.randn(k - 1, 8, generator=g), torch.randint(0, 3, (k - 1,), generator=g)
    clip, lr = 1.0, 0.1
    gt = per_example_gradients(model, x, y, clip)
    in_batch = torch.ones(n, dtype=torch.bool) if q_all else torch.rand(n, generator=g) < 0.5
    noisy = gt[in_batch].sum(0) + sigma * clip * torch.randn(gt.shape[1], generator=g)
    before = {k_: v.detach().clone() for k_, v in model.named_parameters()}
    after, i = {}, 0
    for k_, v in before.items():
        after[k_] = v - lr * noisy[i:i + v.numel()].view_as(v) / n
        i += v.numel()
    s = released_sum(model, before, after, lr, float(n))
    res = prior_aware_guess(gt, per_example_gradients(model, dx, dy, clip), s, in_batch, clip, seed=seed)
    return res


@pytest.mark.slow  # ~0.1 s warm; the first torch.func call of a session imports torch._dynamo (20 s under load)
def test_oracle_reaches_everything_without_noise_and_chance_with_huge_noise():
    clean = _tiny(0.0, seed=1)
    assert clean.hits.float().mean() == 1.0 and clean.noise_measured < 1e-4
    noisy = _tiny(1e4, seed=3, n=128)  # 128 targets, kappa 1/16
    assert noisy.hits.float().mean() < 0.2  # chance 0.0625; P(>= 0.2 | chance) < 1e-5
    assert noisy.noise_measured == pytest.approx(1e4, rel=0.2)


def test_oracle_without_noise_meets_the_sampling_bound():
    """sigma 0, half the examples sampled: the in-batch targets are all found, the others at chance; the
    bound q + (1 - q) kappa of a noiseless subsampled release is what it reaches."""
    res = _tiny(0.0, seed=2, q_all=False)
    in_b = res.in_batch
    assert res.hits.sum() >= in_b


def test_each_target_gets_its_own_decoys():
    """Per-target decoy subsets (the live attack's draw) pick among the target and exactly its K - 1 decoys."""
    from fedsim.evaluation.prior_aware import prior_aware_guess

    g = torch.Generator().manual_seed(0)
    t, d = torch.randn(4, 5, generator=g), torch.randn(10, 5, generator=g)
    inb = torch.tensor([True, False, True, False])
    res = prior_aware_guess(t, d, t[inb].sum(0), inb, None, subsets=torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]]))
    assert res.candidates == 3 and res.hits[0] and res.hits[2]


@pytest.mark.parametrize("z, rounds", [(0.8, 1), (2.0, 4)])
def test_central_dp_bound_is_mu_gdp_two_sqrt_rounds_over_z(z, rounds):
    """Central DP releases sum / m + N(0, (z C/m)^2), replace-one at 2 C/m: in units of C/m a Gaussian of std z on
    sensitivity 2, mu = 2 / z per release, mu = 2 sqrt(rounds) / z without sampling credit (the client in every
    cohort). A mechanism built at sensitivity C/m (add/remove's) would give mu = 1 / z and fail the lower side."""
    from fedsim.evaluation.bounds import central_dp_mechanism

    mech = central_dp_mechanism(z, rounds)
    want = gdp_bound(2 * math.sqrt(rounds) / z, 1 / 64)
    assert want - 1e-9 <= reconstruction_bound(mech, 1 / 64) <= want + 2e-3


def test_central_dp_bound_agrees_with_the_accountant():
    """The bound's mechanism, read as an epsilon (its PLD at delta), is the accountant's release: at or under
    ``central_dp_epsilon`` with every client sampled (RDP at multiplier z / 2, looser than the PLD), within 10 %
    of it (a factor-2 sensitivity error moves it by 2.3x), and at or above the accountant's amplified epsilon
    (the bound takes no sampling credit)."""
    from fedsim.core.accounting import central_dp_epsilon
    from fedsim.core.reconstruction_bound import _pld
    from fedsim.evaluation.bounds import central_dp_mechanism

    z, rounds, delta = 2.0, 4, 1e-5
    pld_eps = _pld(central_dp_mechanism(z, rounds)).get_epsilon_for_delta(delta)
    rdp_eps = central_dp_epsilon(z, rounds, delta)  # cohort 1 of 1: no amplification
    assert 0.9 * rdp_eps <= pld_eps <= rdp_eps
    assert central_dp_epsilon(z, rounds, delta, sampled=3, population=10) <= pld_eps


def test_central_dp_reply_row_says_the_reply_is_unprotected_and_gives_the_release_bound():
    """The curious server attacks the clipped, un-noised reply: bound 1 on the row, the release's bound in words."""
    from types import SimpleNamespace

    from fedsim.core.rows import InversionRow
    from fedsim.evaluation.bounds import central_dp_mechanism, with_reid_bound

    update = SimpleNamespace(server_round=3, cohort=(), defenses={
        "defense.central_dp.clipping": "server", "defense.central_dp.noise_multiplier": 2.0,
        "defense.central_dp.clip_norm": 0.5})
    row = InversionRow(round=3, client=0, method="ig", ok=True, ident_reid_chance=1 / 64)
    out = with_reid_bound(row, None, update)
    release = reconstruction_bound(central_dp_mechanism(2.0, 3), 1 / 64)
    assert out.reid_bound == 1.0
    assert f"{release:.3g}" in out.bound_mechanism and "no sampling credit" in out.bound_mechanism
    assert release < 0.5  # the release is protected; the reply is not
    off = SimpleNamespace(server_round=3, cohort=(), defenses={"defense.central_dp.clipping": "off"})
    assert with_reid_bound(row, None, off).reid_bound is None
