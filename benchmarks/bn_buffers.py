"""BN buffers benchmark: does the BatchNorm prior on the batch statistics the sent buffers reveal help ``ig``, and
does the server-side rule (probe runs, the strongest prior within 25% of the best gradient match) pick its weight
as well as an oracle would?

    nice -n 10 .venv/bin/python -m benchmarks.bn_buffers [--steps 200] [--seeds 0 1] [--out docs/benchmarks/bn_buffers.md]

Victims: real CIFAR-10 test images from the foolbox wheel (8 per case, a different 8 per seed); an untrained
ConvNet with BatchNorm (width 16) in train mode; the client trains 1 step (FedSGD) or 4 steps on its batch of 8
(FedAvg, lr 0.05) and sends its weights and buffers. The attack is what the live pipeline runs
(``fedsim.attacks.pipeline._bn_prior``: ``statistics_from_update`` then ``auto_bn_options``), with the true labels
given (to isolate the prior from label restoration). Per case: ``ig`` without the prior, ``ig`` with the prior at
every grid weight (the oracle is the best of these by PSNR, which only the benchmark can know), the weight the
rule chose (0 = no prior: the probes fitted too little to rank the weights) and the one the plain minimum of the
probe losses (ig-auto's rule) would have chosen ("probe fit": the best probe's final over initial matching
loss, gated at 0.5); the oracle is the best of no prior and the grid by PSNR. PSNR is
the mean over images after the optimal assignment.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks import harness as h
from fedsim.attacks.gradients import fake_gradient
from fedsim.attacks.inversion import INVERSION_METHODS, invert
from fedsim.attacks.inversion.bn_buffers import BN_GRID, _engine_options, auto_bn_options, statistics_from_update
from fedsim.attacks.inversion.criterion import gradient_cosine_distance
from fedsim.attacks.pipeline import server_view_model
from fedsim.core.data import load_victims
from fedsim.core.models.zoo import build_model
from fedsim.core.types import ClientUpdate

SHAPE = (3, 32, 32)
K = 8
CLIENT_LR = 0.05
NOTES_MARK = "<!-- notes: kept when the page is regenerated -->"


def client_round(factory, x: torch.Tensor, y: torch.Tensor, steps: int) -> ClientUpdate:
    """One client's round in train mode: ``steps`` plain SGD steps on its batch (FedSGD for 1)."""
    model = factory().train()
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    b0 = {n: b.detach().clone() for n, b in model.named_buffers()}
    opt = torch.optim.SGD(model.parameters(), lr=CLIENT_LR)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    w1 = {n: p.detach().clone() for n, p in model.named_parameters()}
    b1 = {n: b.detach().clone() for n, b in model.named_buffers()}
    return ClientUpdate("bench", 1, 0, "fedsgd" if steps == 1 else "fedavg", w0, w1, CLIENT_LR, 1, steps, K, K,
                        buffers_after=b1, buffers_before=b0)


def run_case(local_steps: int, seed: int, steps: int, grid, model_name: str = "convnet") -> dict:
    x01, y_all, _, mean, std = load_victims("cifar10")
    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    start = (K * seed) % 13  # 8 images per seed: 0-7, 8-15, then 3-10, 11-18 (model init differs too)
    x, y = (x01[start:start + K] - m) / s, y_all[start:start + K].clone()

    def factory():
        if model_name == "resnet18":  # torchvision ResNet-18, CIFAR stem (BatchNorm throughout)
            return build_model("resnet18", SHAPE, 10, seed=seed)
        return build_model("convnet", SHAPE, 10, seed=seed, batchnorm=True, width=16)

    update = client_round(factory, x, y, local_steps)
    model = server_view_model(update, factory)
    grads = fake_gradient(update, model)
    call = dict(model=model, gradients=grads, labels=y, input_shape=SHAPE, steps=steps, mean=mean, std=std,
                seed=seed, num_samples=K)
    crit = dict(lr=update.lr, local_steps=local_steps, local_batch_size=K)

    def score(trace) -> dict:
        return {"psnr": h.aligned_psnr(trace.inputs, x, mean, std), "match": trace.best_loss,
                "seconds": trace.seconds,
                "criterion": gradient_cosine_distance(model, trace.inputs, trace.labels, grads, **crit)}

    t0 = time.perf_counter()
    out = {"local_steps": local_steps, "seed": seed, "plain": score(invert("ig", **call, return_result=True))}
    buffers = statistics_from_update(model, update.buffers_before, update.buffers_after, local_steps, K, SHAPE)
    base = INVERSION_METHODS["ig"].run.spec_for(model, {})
    out["grid"] = {w: score(invert("ig", **call, return_result=True,
                                   **_engine_options(base.regularizers, base.regularizer_decay, {}, buffers.stats, w)))
                   for w in grid}
    t1 = time.perf_counter()
    prior = auto_bn_options("ig", model, call, {}, buffers, grid)
    out["rule_seconds"] = time.perf_counter() - t1  # probe runs only; the full run at the pick is grid[chosen]
    out["chosen"] = prior.weight  # 0: no prior (the probes fitted too little to rank the weights)
    out["min_pick"] = min(prior.losses, key=lambda w: (prior.losses[w], w))  # ig-auto's rule: the plain minimum
    out["probe_losses"] = prior.losses
    out["probe_fit"] = prior.fit
    line = prior.line
    out["oracle"] = max([0.0, *grid], key=lambda w: at(out, w)["psnr"])  # 0: no prior
    out["line"] = line
    out["seconds"] = time.perf_counter() - t0
    print(json.dumps({k: v for k, v in out.items() if k != "grid"}), flush=True)
    return out


def at(case: dict, weight: float) -> dict:
    """The scores of a case's run at a prior weight (0: ig without the prior)."""
    return case["plain"] if weight == 0 else case["grid"][weight]


def render(cases: list[dict], args, seconds: float) -> str:
    grid = cases[0]["grid"].keys()
    rows = ["| setting | seed | ig (no prior) | " + " | ".join(f"BN {w:g}" for w in grid)
            + " | probe fit | rule's pick | plain-minimum pick | oracle | rule - oracle |",
            "|" + "---|" * (8 + len(grid))]
    for c in cases:
        setting = "FedSGD B=8" if c["local_steps"] == 1 else f"FedAvg T={c['local_steps']}, B=8"
        cells = " | ".join(f"{c['grid'][w]['psnr']:.2f}" for w in grid)
        rule, oracle = at(c, c["chosen"])["psnr"], at(c, c["oracle"])["psnr"]
        rows.append(f"| {setting} | {c['seed']} | {c['plain']['psnr']:.2f} | {cells} | {c['probe_fit']:.2f} "
                    f"| {c['chosen']:g} ({rule:.2f}) "
                    f"| {c['min_pick']:g} ({at(c, c['min_pick'])['psnr']:.2f}) | {c['oracle']:g} ({oracle:.2f}) "
                    f"| {rule - oracle:+.2f} |")
    summary = []
    for t in sorted({c["local_steps"] for c in cases}):
        for label, sub in (("seeds 0-1 (seen when the tolerance was set)", [c for c in cases if c["seed"] < 2]),
                           ("held-out seeds >= 2", [c for c in cases if c["seed"] >= 2])):
            sub = [c for c in sub if c["local_steps"] == t]
            if not sub:
                continue
            gains = [at(c, c["chosen"])["psnr"] - c["plain"]["psnr"] for c in sub]
            summary.append(f"* T={t}, {label}: rule - no prior = {statistics.mean(gains):+.2f} dB mean "
                           f"(per seed {', '.join(f'{g:+.2f}' for g in gains)}); rule = oracle in "
                           f"{sum(c['chosen'] == c['oracle'] for c in sub)} of {len(sub)}, plain minimum = oracle "
                           f"in {sum(c['min_pick'] == c['oracle'] for c in sub)} of {len(sub)}")
    crit = ["| setting | seed | no prior | " + " | ".join(f"BN {w:g}" for w in grid) + " |",
            "|" + "---|" * (3 + len(grid))]
    for c in cases:
        crit.append(f"| T={c['local_steps']} | {c['seed']} | {c['plain']['criterion']:.4f} | "
                    + " | ".join(f"{c['grid'][w]['criterion']:.4f}" for w in grid) + " |")
    return "\n".join([
        "# BatchNorm statistics from the sent buffers (issue 24)", "",
        "Command (2-core CPU, no GPU, torch 1 thread):", "",
        f"    nice -n 10 {args.command}", "",
        f"Model: {args.model}; total {seconds:.0f} s.", "",
        *([] if args.append else [__doc__.split(chr(10) * 2)[2].strip(), ""]),
        f"`ig`, {args.steps} iterations, PSNR (dB) per weight of the grid {tuple(grid)}:", "", *rows, "",
        *summary, "",
        "Server-side criterion of the final reconstruction (`grad-cosine@W0` for FedSGD, "
        "`grad-cosine@unrolled(T=4, B=8)` for FedAvg; lower = better; no ground truth):", "", *crit, "",
    ])


def main() -> None:
    parser = h.parser(__doc__, steps=200, seed_list=[0, 1], threads=1, out=None)
    parser.add_argument("--local-steps", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--model", choices=("convnet", "resnet18"), default="convnet")
    parser.add_argument("--append", action="store_true", help="append the tables to --out (a second model)")
    args = h.parse(parser)
    args.out = Path(args.out) if args.out not in (None, "None") else None
    t0 = time.perf_counter()
    cases = [run_case(t, seed, args.steps, BN_GRID, args.model) for t in args.local_steps for seed in args.seeds]
    page = render(cases, args, time.perf_counter() - t0)
    print(page)
    if args.out is not None and args.append:
        with args.out.open("a") as fh:
            fh.write("\n" + page.split("\n", 2)[2].replace("Command (", f"## {args.model}\n\nCommand (", 1))
    elif args.out is not None:  # hand-written notes (and appended sections) from NOTES_MARK on are kept
        old = args.out.read_text() if args.out.exists() else ""
        kept = old[old.index(NOTES_MARK):] if NOTES_MARK in old else NOTES_MARK + "\n"
        args.out.write_text(page + "\n" + kept)


if __name__ == "__main__":
    main()
