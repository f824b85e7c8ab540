"""Inverting Gradients' TV weight against the victim's activation: fedsim ``ig`` at several TV weights and
breaching's ``invertinggradients`` on the same FedSGD gradients (the evidence for ``ig_tv_for``).

    python benchmarks/tv_by_activation.py [--models lenet5:sigmoid,lenet5:tanh,lenet5:relu,convnet:relu,lenet5:silu]
                                          [--tvs 0.01,0.2,0.2d,2.0] [--batches 1,4,8] [--seeds 2] [--steps 300]
                                          [--threads 2] [--json FILE]

Cases as in benchmarks/peers.py (untrained zoo model seeded by the seed, train mode, real CIFAR-10 images
7s, 7s+1, ... mod 20, labels given and sorted, same init seed for both attackers); PSNR after label-aware
alignment. A TV weight ending in ``d`` decays with the step size (``regularizer_decay``, what ``ig_tv_for``'s
smooth class uses). Prints one JSON line per cell and a markdown table of means over seeds. breaching is a
benchmark-only peer (see benchmarks/peers.py); without it the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

import peers  # benchmarks/ is the script's own folder


def cell(spec: str, seed: int, k: int, tvs: list[str], steps: int) -> dict:
    model, grads, gt, labels, mean, std = peers.case(spec, k, seed)  # spec: zoo "name:activation[:bn]"
    lab = labels.sort().values
    row: dict = {"model": spec, "seed": seed, "k": k}
    for tv in tvs:
        weight, decay = float(tv.rstrip("d")), tv.endswith("d")
        xf, _, _ = peers.run_fedsim(model, grads, lab, k, steps, seed, mean, std, regularizers={"tv": weight},
                                    regularizer_decay=decay)
        row[f"tv {tv}"] = peers.score(xf, gt, lab, labels, mean, std)
    xb, _, _ = peers.run_breaching(model, grads, lab, k, steps, seed, mean, std)
    row["breaching"] = peers.score(xb, gt, lab, labels, mean, std)
    return row


def table(rows: list[dict], tvs: list[str]) -> str:
    cols = [f"tv {tv}" for tv in tvs] + ["breaching"]
    lines = ["| model:activation | batch | seeds | " + " | ".join(f"`ig` {c}" if c != "breaching" else c
                                                               for c in cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["model"], r["k"]), []).append(r)
    for (spec, k), cells in groups.items():
        means = [statistics.mean(c[col] for c in cells) for col in cols]
        lines.append(f"| {spec} | {k} | {len(cells)} | " + " | ".join(f"{v:.2f}" for v in means) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="lenet5:sigmoid,lenet5:tanh,lenet5:relu,convnet:relu,lenet5:silu")
    p.add_argument("--tvs", default="0.01,0.2,0.2d,2.0", help="TV weights; a trailing d: decayed with the step size")
    p.add_argument("--batches", default="1,4,8")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if not peers.have_breaching():
        print("breaching is not installed: skipping (see benchmarks/peers.py for the benchmark-only install)")
        return 0
    torch.set_num_threads(args.threads)
    tvs = args.tvs.split(",")
    for tv in tvs:
        try:
            float(tv.rstrip("d"))
        except ValueError:
            p.error(f"--tvs: {tv!r} is not a number (optionally followed by d)")
    rows = []
    for spec in args.models.split(","):
        for seed in range(args.seeds):
            for k in (int(b) for b in args.batches.split(",")):
                row = cell(spec, seed, k, tvs, args.steps)
                print(json.dumps({a: round(b, 2) if isinstance(b, float) else b for a, b in row.items()}), flush=True)
                rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print(table(rows, tvs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
