"""Realistic-regime cells: ResNet-18 (CIFAR stem), FedSGD and FedAvg (T local steps), untrained and trained,
fedsim ``ig`` against breaching's ``invertinggradients`` on the same update.

    .venv/bin/python -m benchmarks.realistic [--batches 1,8] [--steps 100] [--local-steps 4] [--tv 2.0] [--threads 2]
                                             [--out docs/benchmarks/realistic.md]

Attacked images: the first K of the real 32x32 images in the foolbox wheel, the 20 CIFAR-10 test images first,
then the 20 CIFAR-100 ones (label mod 10: the model has 10 classes) - batch 32 is 20 CIFAR-10 + 12 CIFAR-100
images, the most this machine has offline; labels given to both attackers, sorted. "Trained": the same initial
ResNet-18 (seed 0) after ``--train-steps`` SGD steps (lr 0.05, batch 8, random flips and 4-pixel crops) on images
the attack never sees: the 20 foolbox ImageNet images, downsampled to 32x32 (label mod 10); the loss on those and
on the attacked images before and after is printed with the table. FedSGD: the gradient of the batch.
FedAvg: the client takes T full-batch SGD steps (lr ``--client-lr``) on the same K images; both attackers get
the fake gradient (W0 - WT) / (T lr) at W0 (the single-step reading both tools make of a FedAvg update).
breaching is a benchmark-only peer (see benchmarks/peers.py); without it the script says so and exits 0.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks import harness as h
from benchmarks import peers
from fedsim.attacks.gradients import batch_gradient
from fedsim.core.data import load_victims


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int = 0) -> nn.Module:
    """SGD with flips and 4-pixel crops on (x, y) in model space; returns a trained copy."""
    model = copy.deepcopy(model).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(len(x), generator=gen)[:8]
        xb = x[idx].clone()
        flip = torch.rand(len(xb), generator=gen) < 0.5
        xb[flip] = xb[flip].flip(-1)
        dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=gen))
        xb = torch.roll(nn.functional.pad(xb, (4, 4, 4, 4)), shifts=(dy, dx), dims=(-2, -1))[..., 4:-4, 4:-4]
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), y[idx]).backward()
        opt.step()
    return model


@torch.no_grad()
def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model = copy.deepcopy(model).train()  # batch statistics: running ones lag after a few steps
    return float(nn.functional.cross_entropy(model(x), y))


def attacked_and_training_images():
    """(attacked images in model space, labels, mean, std, training images, labels): attacked = the 20 CIFAR-10
    then the 20 CIFAR-100 images (labels mod 10), training = the 20 ImageNet images at 32x32 (labels mod 10);
    all normalised with the CIFAR-10 statistics."""
    x10, y10, _, mean, std = load_victims("cifar10")
    x100, y100, _, _, _ = load_victims("cifar100")
    xi, yi, _, _, _ = load_victims("imagenet", size=32)
    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    x = (torch.cat([x10, x100]) - m) / s
    return x, torch.cat([y10, y100 % 10]), mean, std, (xi - m) / s, yi % 10


def fedavg_fake_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float):
    client = copy.deepcopy(model).train()
    opt = torch.optim.SGD(client.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(client(x), y).backward()
        opt.step()
    return [(w0.detach() - w1.detach()) / (steps * lr) for w0, w1 in zip(model.parameters(), client.parameters())]


def main(argv=None) -> int:
    p = h.parser(__doc__, batches="1,8", steps=100, threads=2, json=None, out=h.PAGES / "realistic.md")
    p.add_argument("--local-steps", type=int, default=4)
    p.add_argument("--client-lr", type=float, default=0.01)
    p.add_argument("--train-steps", type=int, default=100)
    p.add_argument("--tv", type=float, default=None, help="override ig's TV weight (default: the method's)")
    args = h.parse(p, argv)
    if not peers.have_breaching():
        print("breaching is not installed: skipping (see benchmarks/peers.py for the benchmark-only install)")
        return 0
    batches = [int(b) for b in args.batches.split(",")]
    if max(batches) > 40:
        p.error(f"--batches: at most 40 (the real 32x32 images on this machine), got {max(batches)}")
    t0 = time.time()
    xn, y, mean, std, xt, yt = attacked_and_training_images()
    base = peers.make_model("resnet18", 0).train()
    trained = train(base, xt, yt, args.train_steps)
    notes = (f"trained: {args.train_steps} SGD steps on the 20 ImageNet images at 32x32; loss there "
             f"{loss_of(base, xt, yt):.3f} -> {loss_of(trained, xt, yt):.3f}, on the first 8 attacked images "
             f"{loss_of(base, xn[:8], y[:8]):.3f} -> {loss_of(trained, xn[:8], y[:8]):.3f} (train-mode BN)")
    print(notes, flush=True)
    cells = []
    for k in batches:
        gt, labels = xn[:k], y[:k]
        lab = labels.sort().values
        for state, model in (("untrained", base), ("trained", trained)):
            for algo in ("FedSGD", f"FedAvg T={args.local_steps}"):
                if algo == "FedSGD":
                    grads = [g.detach() for g in batch_gradient(model, gt, labels)]
                else:
                    grads = fedavg_fake_gradient(model, gt, labels, args.local_steps, args.client_lr)
                options = {} if args.tv is None else {"regularizers": {"tv": args.tv}}
                xf, tf, cf = peers.run_fedsim(model, grads, lab, k, args.steps, 0, mean, std, **options)
                xb, tb, cb = peers.run_breaching(model, grads, lab, k, args.steps, 0, mean, std)
                c = {"k": k, "model": state, "algorithm": algo, "fedsim": peers.score(xf, gt, lab, labels, mean, std),
                     "breaching": peers.score(xb, gt, lab, labels, mean, std), "c_fedsim": cf, "c_breaching": cb}
                print(c, flush=True)
                cells.append(c)
    lines = [f"Command: `{args.command}` "
             f"({(time.time() - t0) / 60:.0f} min, {args.threads} torch threads, CPU). {notes}.", "",
             "| batch | model | update | fedsim `ig` PSNR | breaching IG PSNR | diff | CPU s/iter fedsim / breaching |",
             "|---|---|---|---|---|---|---|"]
    for c in cells:
        lines.append(f"| {c['k']} | {c['model']} | {c['algorithm']} | {c['fedsim']:.2f} | {c['breaching']:.2f} | "
                     f"{c['fedsim'] - c['breaching']:+.2f} | {c['c_fedsim']:.2f} / {c['c_breaching']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"cells": cells, "notes": notes}, indent=1))
    Path(args.out).write_text("# Realistic regime: ResNet-18, fedsim vs breaching\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
