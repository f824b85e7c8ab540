"""RLU (Chen & Vikalo, ICML 2024) against aux-nnls, iLRG and the even split on trained models (issue 24).

MNIST subset, the ConvNet of the trained-model section (``labels_trained.py``: pretraining pool, victim pool and
the server's public split ``aux_split`` are disjoint) after 100 / 300 plain-SGD steps. Client batches of 32
victims, IID or with Dirichlet(0.3) class proportions; FedSGD (K = 32) and FedAvg (T = 4 local steps of 32,
lr 0.05, K = 128 visits). Every method gets the same server-side options: the public split (``aux=``, 1000
samples, class-stratified), ``lr``, ``local_steps``, ``local_batch_size``.

    nice -n 10 .venv/bin/python -m benchmarks.labels_rlu --seeds 3 --batches 20

The row "rlu, first pass" (FedAvg only) scores the counts RLU starts its refinement from (solved with the
erroneous confidence measured at the weights received), to show what the simulated local steps add.
Prints a markdown section (mean over all batches, [min, max] of the per-seed means).
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks import harness as h
from benchmarks.labels_trained import checkpoints, client_update, trained_pools, uniform_guess
from fedsim.attacks.labels import restore_labels
from fedsim.attacks.labels.common import counts_to_labels
from fedsim.core.metrics.labels import label_metrics
from fedsim.core.types import LabelRestoration

METHODS = {"rlu": {}, "rlu (mean-softmax, public |h|^2)": {"confidence": "mean-softmax", "feature": "public"},
           "aux-nnls": {}, "ilrg": {}}
FIRST = "rlu, first pass (FedAvg: confidence at W_T, no simulation)"
METRICS = ("label_lnacc", "label_instacc", "label_hist_tv")
LR, B, C = 0.05, 32, 10


def draw_batch(vic_y: torch.Tensor, n: int, alpha: float | None, gen: torch.Generator) -> torch.Tensor:
    """Indices of n victims: IID (``alpha`` None) or class proportions ~ Dirichlet(alpha), then victims of
    each drawn class without replacement."""
    if alpha is None:
        return torch.randperm(len(vic_y), generator=gen)[:n]
    conc = torch.full((C,), float(alpha))
    props = torch._standard_gamma(conc, generator=gen)
    labels = torch.multinomial(props / props.sum(), n, replacement=True, generator=gen)
    parts = []
    for c in range(C):
        m = int((labels == c).sum())
        if m:
            pool = torch.nonzero(vic_y == c).flatten()
            parts.append(pool[torch.randperm(len(pool), generator=gen)[:m]])
    return torch.cat(parts)


def run_cell(model, state, vic, pub, steps_local: int, alpha, seed: int, batches: int, shape) -> dict:
    """Per-method lists of metric dicts for ``batches`` client updates of one setting and seed."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list] = {m: [] for m in [*METHODS, FIRST, "even split"]}
    k = B * steps_local
    for _ in range(batches):
        idx = draw_batch(vic[1], k, alpha, gen)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        x, y = vic[0][idx], vic[1][idx]
        grads = client_update(model, state, x, y, steps_local, lr=LR)
        model.load_state_dict(state)
        for name, extra in METHODS.items():
            method = name.split(" ")[0]
            res = restore_labels(method, model=model, gradients=grads, num_samples=k, aux=pub, lr=LR,
                                 local_steps=steps_local, local_batch_size=B, max_aux=1000, input_shape=shape,
                                 **extra)
            out[name].append(label_metrics(y, res, C))
            if name == "rlu" and "first_counts" in res.extras:  # FedAvg: before the simulated-steps refinement
                first = res.extras["first_counts"]
                out[FIRST].append(label_metrics(y, LabelRestoration(FIRST, first, counts_to_labels(first)), C))
        out["even split"].append(label_metrics(y, uniform_guess(k, C), C))
    return out


def fmt(per_seed: list[list[dict]], key: str) -> str:
    if not per_seed[0]:
        return "-"
    means = [statistics.fmean(r[key] for r in rows) for rows in per_seed]
    overall = statistics.fmean(r[key] for rows in per_seed for r in rows)
    return f"{overall:.2f} [{min(means):.2f}, {max(means):.2f}]"


def main() -> None:
    ap = h.parser(__doc__, seeds=3, threads=1)
    ap.add_argument("--batches", type=int, default=20, help="client updates per setting and seed (default 20)")
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 300])
    args = h.parse(ap)
    start = time.perf_counter()
    pre, pub, vic, shape = trained_pools("mnist")
    model, states = checkpoints("convnet", shape, pre, steps=tuple(args.steps))
    lines = []
    for s in args.steps:
        model.load_state_dict(states[s])
        with torch.no_grad():
            acc = float((model(vic[0][:1000]).argmax(1) == vic[1][:1000]).double().mean())
        for steps_local in (1, 4):
            for alpha in (None, 0.3):
                per_seed = [run_cell(model, states[s], vic, pub, steps_local, alpha, 100 * seed + s, args.batches,
                                     shape) for seed in range(args.seeds)]
                algo = "FedSGD, K = 32" if steps_local == 1 else "FedAvg T = 4, K = 128"
                dist = "IID" if alpha is None else "Dirichlet(0.3)"
                lines += [f"### {s} SGD steps (victim accuracy {acc:.2f}), {algo}, {dist}", "",
                          "| method | LnAcc | InstAcc | hist TV |", "|---|---|---|---|"]
                for m in per_seed[0]:
                    lines.append(f"| {m} | " + " | ".join(fmt([ps[m] for ps in per_seed], key) for key in METRICS)
                                 + " |")
                lines.append("")
                print("\n".join(lines[-(len(per_seed[0]) + 5):]), flush=True)
    print(f"total {time.perf_counter() - start:.0f} s; `{args.command}` on {h.machine()}", flush=True)


if __name__ == "__main__":
    main()
