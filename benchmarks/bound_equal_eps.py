"""Same epsilon, different risk: DP-SGD settings (sigma, q, steps) of equal epsilon and their reconstruction bounds.

Hayes, Mahloujifar & Balle (NeurIPS 2023) show that (epsilon, delta) does not fix the risk of reconstruction:
two DP-SGD settings with the same epsilon can bound a prior-aware attacker very differently. For three (q, steps)
settings this script solves for the noise multiplier that gives the same epsilon at delta with Google's
``dp_accounting`` (PLD accountant, add/remove, Poisson sampling; bisection on sigma), computes the bound
``1 - f(kappa)`` of each (:mod:`fedsim.core.reconstruction_bound`: dp_accounting's PLD read by riskcal) over a range of
chance levels kappa, and measures the prior-aware attack in the gradient-space model of Hayes et al. (Sec. 5: the
adversary knows every other example, so the release at step t is ``[target sampled] g_z + N(0, sigma^2 I)``, the
candidates' clipped gradients ``g_c`` orthonormal with norm C = 1; the attack is the Bayes-optimal one,
``argmax_c sum_t log((1 - q) + q exp((o_t[c] - 1/2) / sigma^2))``), a Monte Carlo of ``--trials`` targets per
(setting, kappa) with 95 % Clopper-Pearson intervals. The measurement is a simulation of the release model, not a
federation (``configs/sweep_bound.toml`` measures fedsim's own DP-SGD updates).

    .venv/bin/python -m benchmarks.bound_equal_eps --out benchmarks/results

writes ``bound_equal_eps.png`` and ``bound_equal_eps.json`` and prints the table.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from benchmarks import harness
from fedsim.core.reconstruction_bound import Mechanism, clopper_pearson, reconstruction_bound

SETTINGS = ((1.0, 1), (0.1, 100), (0.01, 1000))  # (q, steps): one full-batch release ... many small-batch steps
KAPPAS = (1 / 1000, 1 / 256, 1 / 64, 1 / 16, 1 / 4)
MEASURE_KAPPAS = (1 / 64, 1 / 16)


def epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    """dp_accounting's PLD epsilon of ``steps`` Poisson-subsampled Gaussian steps (add/remove)."""
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant

    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)) if q < 1
        else dp_accounting.GaussianDpEvent(sigma), steps)
    acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    return float(acc.compose(event).get_epsilon(delta))


def solve_sigma(target: float, q: float, steps: int, delta: float, tol: float = 1e-3) -> float:
    """The noise multiplier whose epsilon is ``target`` (bisection on a log scale; epsilon falls with sigma)."""
    lo, hi = 0.2, 200.0
    while hi / lo > 1 + tol:
        mid = math.sqrt(lo * hi)
        if epsilon(mid, q, steps, delta) > target:
            lo = mid
        else:
            hi = mid
    return hi


def simulate(sigma: float, q: float, steps: int, candidates: int, trials: int, seed: int) -> int:
    """Hits of the Bayes-optimal prior-aware attack over ``trials`` targets (each uniform over the candidates)."""
    rng = np.random.default_rng(seed)
    hits, chunk = 0, max(1, 4_000_000 // (steps * candidates))
    for start in range(0, trials, chunk):
        n = min(chunk, trials - start)
        z = rng.integers(0, candidates, n)
        obs = sigma * rng.standard_normal((n, steps, candidates))
        sampled = rng.random((n, steps)) < q
        obs[np.arange(n)[:, None], np.arange(steps)[None, :], z[:, None]] += sampled
        loglik = np.log1p(-q + q * np.exp(np.minimum((obs - 0.5) / sigma ** 2, 700))) if q < 1 else (obs - 0.5)
        guess = loglik.sum(1).argmax(1)
        hits += int((guess == z).sum())
    return hits


def main() -> None:
    ap = harness.parser(__doc__, out=harness.RESULTS)
    ap.add_argument("--epsilon", type=float, default=8.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--trials", type=int, default=1000)
    args = harness.parse(ap)
    t0 = time.perf_counter()
    rows = []
    for i, (q, steps) in enumerate(SETTINGS):
        sigma = solve_sigma(args.epsilon, q, steps, args.delta)
        mech = Mechanism(sigma, sample_rate=q, steps=steps)
        row = {"q": q, "steps": steps, "sigma": sigma, "epsilon": epsilon(sigma, q, steps, args.delta),
               "bounds": {f"{k:.6g}": reconstruction_bound(mech, k) for k in KAPPAS}, "measured": {}}
        for j, k in enumerate(MEASURE_KAPPAS):
            cands = round(1 / k)
            h = simulate(sigma, q, steps, cands, args.trials, seed=1000 * i + j)
            lo, hi = clopper_pearson(h, args.trials)
            row["measured"][f"{k:.6g}"] = {"hits": h, "trials": args.trials, "rate": h / args.trials, "ci": [lo, hi],
                                          "bound": reconstruction_bound(mech, k)}
        rows.append(row)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    harness.write_json(out / "bound_equal_eps.json", rows, args.command, epsilon=args.epsilon, delta=args.delta,
                 trials=args.trials, seconds=round(seconds, 1))
    _figure(rows, args, out / "bound_equal_eps.png")
    print(f"| q | steps | sigma | epsilon | " + " | ".join(f"bound at kappa 1/{round(1 / k)}" for k in KAPPAS)
          + " | " + " | ".join(f"measured at 1/{round(1 / k)} [95% CP]" for k in MEASURE_KAPPAS) + " |")
    print("|---" * (4 + len(KAPPAS) + len(MEASURE_KAPPAS)) + "|")
    for r in rows:
        b = " | ".join(f"{100 * v:.1f} %" for v in r["bounds"].values())
        m = " | ".join(f"{100 * v['rate']:.1f} % [{100 * v['ci'][0]:.1f}, {100 * v['ci'][1]:.1f}]"
                       for v in r["measured"].values())
        print(f"| {r['q']:g} | {r['steps']} | {r['sigma']:.3f} | {r['epsilon']:.3f} | {b} | {m} |")
    print(f"({seconds:.0f} s)")


def _figure(rows: list[dict], args, path: Path) -> None:
    from fedsim.lab import plots  # Agg backend, the report's style

    plt = plots.plt
    with plt.rc_context(plots._RC):
        fig, ax = plt.subplots(figsize=(7.2, 4.2))
        ks = np.geomspace(1e-3, 0.5, 40)
        for i, r in enumerate(rows):
            mech = Mechanism(r["sigma"], sample_rate=r["q"], steps=r["steps"])
            color = f"C{i}"
            ax.plot(ks, [reconstruction_bound(mech, k) for k in ks], "-", color=color,
                    label=f"q {r['q']:g}, {r['steps']} steps, sigma {r['sigma']:.2f}: bound")
            for k, m in r["measured"].items():
                kf = float(k)
                ax.errorbar([kf], [m["rate"]], yerr=[[m["rate"] - m["ci"][0]], [m["ci"][1] - m["rate"]]], fmt="o",
                            color=color, capsize=3)
        ax.plot(ks, ks, ":", color="grey", label="chance kappa")
        ax.set_xscale("log")
        ax.set_xlabel("chance level kappa (1 / candidates)")
        ax.set_ylabel("success of any attack (bound) / measured")
        ax.set_title(f"DP-SGD at the same epsilon {args.epsilon:g} (delta {args.delta:g}): different bounds\n"
                     "dots: prior-aware attack, simulated release model, 95% Clopper-Pearson", fontsize=9)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(path, dpi=110, facecolor="white")
        plt.close(fig)


if __name__ == "__main__":
    main()
