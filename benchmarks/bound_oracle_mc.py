"""The ORACLE-PRIOR attack's expected success on fedsim's own gradients, by Monte Carlo over fresh DP-SGD releases.

One sweep run gives 256 targets per noise level (``configs/sweep_bound.toml``); this script asks what the attack
(``fedsim.evaluation.prior_aware.prior_aware_guess``, per-target decoy draws) scores on average on the same
gradients: client 0's 64 examples and 1,024 test-split decoys at the initial ConvNet of the sweep's sigma-2
setting (the model does not depend on sigma), with ``--releases`` fresh Poisson batches (q = 0.25) and Gaussian
noises per sigma. The rate is set beside the DP bound of the game (sampling kept) and of the same release with the
target known to be in the batch.

    .venv/bin/python -m benchmarks.bound_oracle_mc 100
"""

from __future__ import annotations

import torch

from benchmarks import harness as h
from fedsim.core.experiment import client_data, make_model, test_data
from fedsim.core.reconstruction_bound import Mechanism, clopper_pearson, reconstruction_bound
from fedsim.evaluation.prior_aware import per_example_gradients, prior_aware_guess
from fedsim.lab.sweep.spec import load_sweep


def main(releases: int) -> None:
    sw = load_sweep("configs/sweep_bound.toml")
    cfg = sw.config(sw.settings[4], 0)
    model = make_model(cfg)
    model.train()
    x, y = client_data(cfg, 0, cfg.run.num_clients)
    n = len(x)
    tx, ty = test_data(cfg)
    g = torch.Generator().manual_seed(0)
    pool = torch.randperm(len(tx), generator=g)[:1024]
    gt = per_example_gradients(model, x, y, 1.0)
    gd = per_example_gradients(model, tx[pool], torch.as_tensor(ty)[pool], 1.0)
    for sigma in (0.5, 2.0):
        hits = total = 0
        for rep in range(releases):
            inb = torch.rand(n, generator=g) < 0.25
            s = gt[inb].sum(0) + sigma * torch.randn(gt.shape[1], generator=g)
            sub = torch.stack([torch.randperm(len(pool), generator=g)[:n - 1] for _ in range(n)])
            r = prior_aware_guess(gt, gd, s, inb, 1.0, seed=rep, subsets=sub)
            hits, total = hits + int(r.hits.sum()), total + n
        lo, hi = clopper_pearson(hits, total)
        print(f"sigma {sigma:g}: {hits}/{total} = {hits / total:.2%} [{lo:.2%}, {hi:.2%}], bound "
              f"{reconstruction_bound(Mechanism(sigma, 0.25, 1), 1 / n):.2%} (target in batch: "
              f"{reconstruction_bound(Mechanism(sigma, 1.0, 1), 1 / n):.2%})")


if __name__ == "__main__":
    p = h.parser(__doc__)
    p.add_argument("releases", type=int, nargs="?", default=100, help="fresh releases per sigma (default 100)")
    main(h.parse(p).releases)
