"""Probes of what limits ``ig`` at batch 8 and 16 on the peer benchmark's SmallCNN (issue 24: the +3 dB target).

    nice -n 5 .venv/bin/python -m benchmarks.peers_probes [--cells 16:0:1,16:1:1,8:0:1,8:1:0.2,8:2:0.5]
                                                           [--variants base,lr3,lr10,steps600,steps1200,restarts4,combine]

Each cell is ``batch:seed:TV`` of ``benchmarks/peers.py`` (labels given, untrained victim in train mode, real
CIFAR-10 images of foolbox); the TV weights default to those ``ig-shadow`` picked on these cells
(docs/benchmarks/peers.md, table d), with its picked step size 1.0. Variants change one thing from that: the step
size (3, 10), the iteration budget (600, 1200), 4 restarts kept by their matching loss (the engine's rule), and
``combine``: the 4 restarts' images swapped slot by slot (among the slots of the same label) into the best
restart's batch whenever the swap lowers the gradient cosine distance (the server's criterion), two passes.
PSNR after the optimal assignment (``peers.score``). These cells are the development cells of ``ig``: the probes
show where the limit is, they do not tune a default.
"""

from __future__ import annotations

import time

import torch

from benchmarks import harness as h
from benchmarks.peers import case, score
from fedsim.attacks.inversion import invert
from fedsim.attacks.inversion.criterion import gradient_cosine_distance

VARIANTS = {"base": {}, "lr3": {"attack_lr": 3.0}, "lr10": {"attack_lr": 10.0}, "steps600": {"steps": 600},
            "steps1200": {"steps": 1200}, "restarts4": {"restarts": 4}, "combine": {"restarts": 4}}


def combine(model, grads, labels, best: torch.Tensor, every: torch.Tensor, passes: int = 2) -> torch.Tensor:
    """Greedy per-slot swaps from all restarts' images, kept when the criterion falls."""
    cur, cur_loss = best.clone(), gradient_cosine_distance(model, best, labels, grads)
    for _ in range(passes):
        for s in range(len(labels)):
            for r in range(len(every)):
                for j in (j for j in range(len(labels)) if labels[j] == labels[s]):
                    cand = cur.clone()
                    cand[s] = every[r][j]
                    if torch.equal(cand[s], cur[s]):
                        continue
                    loss = gradient_cosine_distance(model, cand, labels, grads)
                    if loss < cur_loss:
                        cur, cur_loss = cand, loss
    return cur


def run(k: int, seed: int, tv: float, variant: str) -> tuple[float, float]:
    model, grads, gt, y, mean, std = case("cnn", k, seed)
    labels = y.sort().values
    options = {"steps": 300, "attack_lr": 1.0, **VARIANTS[variant]}
    restarts = int(options.pop("restarts", 1))
    t0 = time.perf_counter()
    trace = invert("ig", model=model, gradients=grads, labels=labels, input_shape=(3, 32, 32), mean=mean, std=std,
                   seed=seed, return_result=True, restarts=restarts,
                   restart_regularizers=[{"tv": tv}] * restarts, **options)
    x = trace.inputs.detach()
    if variant == "combine":
        x = combine(model, grads, labels, x, trace.options["restart_inputs"])
    return score(x, gt, labels, y, mean, std), time.perf_counter() - t0


def main(argv=None) -> int:
    ap = h.parser(__doc__, threads=1)
    ap.add_argument("--cells", default="16:0:1,16:1:1,8:0:1,8:1:0.2,8:2:0.5")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = h.parse(ap, argv)
    print("| batch | seed | TV | variant | PSNR | seconds |\n|---|---|---|---|---|---|")
    for cell in args.cells.split(","):
        k, seed, tv = cell.split(":")
        for variant in args.variants.split(","):
            psnr, seconds = run(int(k), int(seed), float(tv), variant)
            print(f"| {k} | {seed} | {tv} | {variant} | {psnr:.2f} | {seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
