"""Can Inverting Gradients pick its own TV weight from what the server sees? The rule's pick vs the oracle pick.

For every held-out case (models, images and seeds that ``ig_tv_for`` and the presets were never tuned on) ``ig``
runs once per TV weight of a grid; the **rule** keeps the reconstruction whose own gradient (cosine distance to
the shared gradient, no regulariser term: a number the server can compute) matches best; the **oracle** keeps the
one with the best PSNR against the true images (ground truth: an upper bound, never available to the server).
Also reported: ``ig`` at today's default weight (``ig_tv_for``), the "screen" variant of the rule (every weight
for a quarter of the budget, then the chosen one restarted for the full budget: 2x the cost instead of 5x), and
the **held-out** rule: a random 20 % of the shared gradient's coordinates is held back, ``ig-masked`` fits the
other 80 % (half the budget) at each weight, and the weight whose reconstruction best predicts the held-back
coordinates (cosine) wins; the reported PSNR is that weight's full ``ig`` run. Both rules use only the update.

    .venv/bin/python benchmarks/self_tuning.py [--cases all] [--batches 4,8] [--seeds 2] [--steps 300]
                                               [--tvs 0.02,0.2,0.5,1.0,2.0] [--threads 1] [--json FILE]

Images: the 20 real CIFAR-100 images of foolbox (100 classes; the development cases used CIFAR-10), image
``(7 seed + i) mod 20``; labels given (sorted). Untrained models seeded by the seed, train mode, FedSGD batch-mean
gradient unless the case says FedAvg (T = 4 local steps of the whole batch, lr 0.05; the fake gradient).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import invert
from fedsim.attacks.inversion.methods import ig_tv_for
from fedsim.core.data.victims import load_victims
from fedsim.core.metrics.images import image_metrics


def _cnn5(act: type[nn.Module], classes: int, width: int = 16, bn: bool = False) -> nn.Module:
    """5x5 convolutions with max-pooling (a LeNet/AlexNet-style block), not a zoo model."""
    norm = (lambda c: nn.BatchNorm2d(c)) if bn else (lambda c: nn.Identity())
    return nn.Sequential(nn.Conv2d(3, width, 5, padding=2), norm(width), act(), nn.MaxPool2d(2),
                         nn.Conv2d(width, 2 * width, 5, padding=2), norm(2 * width), act(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(2 * width * 8 * 8, classes))


def _strided(act: type[nn.Module], classes: int, width: int = 24) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), act(), nn.Conv2d(width, width, 3, stride=2, padding=1),
                         act(), nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), act(), nn.Flatten(),
                         nn.Linear(2 * width * 8 * 8, classes))


def _mlp(act: type[nn.Module], classes: int, width: int = 512) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, width), act(), nn.Linear(width, width), act(),
                         nn.Linear(width, classes))


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[int], nn.Module]  # classes -> model
    fedavg: bool = False


CASES = {c.name: c for c in (
    Case("cnn5-relu", lambda k: _cnn5(nn.ReLU, k)),
    Case("cnn5-elu", lambda k: _cnn5(nn.ELU, k)),
    Case("cnn5-relu-bn", lambda k: _cnn5(nn.ReLU, k, bn=True)),
    Case("strided-leakyrelu", lambda k: _strided(nn.LeakyReLU, k)),
    Case("strided-gelu", lambda k: _strided(nn.GELU, k)),
    Case("mlp-tanh", lambda k: _mlp(nn.Tanh, k)),
    Case("cnn5-relu-fedavg4", lambda k: _cnn5(nn.ReLU, k), fedavg=True),
)}


def matching_distance(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, target: list[torch.Tensor]) -> float:
    """1 - cosine similarity of the dummy batch's gradient and the shared one (all layers as one vector)."""
    grads = batch_gradient(model, x, labels)
    dot = sum((g * t).sum() for g, t in zip(grads, target))
    norm = torch.sqrt(sum((g * g).sum() for g in grads)) * torch.sqrt(sum((t * t).sum() for t in target))
    return float(1 - dot / norm.clamp_min(1e-12))


def heldout_split(target: list[torch.Tensor], fraction: float, seed: int) -> tuple[list[torch.Tensor], list]:
    """(target with a random ``fraction`` of its coordinates zeroed, boolean masks of the held-out coordinates)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    masks = [torch.rand(t.shape, generator=g) < fraction for t in target]
    return [t.masked_fill(m, 0.0) for t, m in zip(target, masks)], masks


def heldout_distance(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, target: list[torch.Tensor],
                     masks: list[torch.Tensor]) -> float:
    """1 - cosine similarity on the held-out coordinates only (those the fit never saw)."""
    grads = batch_gradient(model, x, labels)
    gs = torch.cat([g[m] for g, m in zip(grads, masks)])
    ts = torch.cat([t[m] for t, m in zip(target, masks)])
    return float(1 - (gs @ ts) / (gs.norm() * ts.norm()).clamp_min(1e-12))


def shared_gradient(case: Case, model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 0.05,
                    local_steps: int = 4) -> tuple[list[torch.Tensor], dict]:
    """FedSGD: the batch gradient. FedAvg: the fake gradient (W0 - WT) / (T lr) of T full-batch steps."""
    if not case.fedavg:
        return [g.detach() for g in batch_gradient(model, x, y)], {}
    import copy

    local = copy.deepcopy(model)
    w0 = [p.detach().clone() for p in local.parameters()]
    opt = torch.optim.SGD(local.parameters(), lr=lr)
    for _ in range(local_steps):
        opt.zero_grad()
        nn.functional.cross_entropy(local(x), y).backward()
        opt.step()
    fake = [(a - b.detach()) / (local_steps * lr) for a, b in zip(w0, local.parameters())]
    return fake, {}


def cell(case: Case, seed: int, k: int, tvs: list[float], steps: int) -> dict:
    x, y, classes, mean, std = load_victims("cifar100")
    idx = torch.tensor([(seed * 7 + i) % len(x) for i in range(k)])
    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    gt, labels = (x[idx] - m) / s, y[idx].clone()
    torch.manual_seed(seed)
    model = case.build(classes)
    model.train()
    target, _ = shared_gradient(case, model, gt, labels)
    lab = labels.sort().values
    row: dict = {"case": case.name, "seed": seed, "k": k, "default_tv": ig_tv_for(model), "tv": {}}

    def run(tv: float, budget: int) -> tuple[torch.Tensor, float]:
        t0 = time.perf_counter()
        xh = invert("ig", model=model, gradients=target, labels=lab, input_shape=(3, 32, 32), steps=budget,
                    mean=mean, std=std, seed=seed, regularizers={"tv": tv}).detach()
        return xh, time.perf_counter() - t0

    fit, masks = heldout_split(target, 0.2, seed)
    for tv in tvs:
        xh, sec = run(tv, steps)
        psnr = image_metrics(xh, gt, mean, std, labels_hat=lab, labels_true=labels)["psnr"]
        row["tv"][tv] = {"psnr": psnr, "match": matching_distance(model, xh, lab, target), "seconds": sec}
        sx, _ = run(tv, max(1, steps // 4))
        row["tv"][tv]["screen_match"] = matching_distance(model, sx, lab, target)
        hx = invert("ig-masked", model=model, gradients=fit, labels=lab, input_shape=(3, 32, 32),
                    steps=max(1, steps // 2), mean=mean, std=std, seed=seed, regularizers={"tv": tv}).detach()
        row["tv"][tv]["heldout"] = heldout_distance(model, hx, lab, target, masks)
    by = row["tv"]
    row["rule"] = min(by, key=lambda t: by[t]["match"])
    row["screen"] = min(by, key=lambda t: by[t]["screen_match"])
    row["holdout"] = min(by, key=lambda t: by[t]["heldout"])
    row["oracle"] = max(by, key=lambda t: by[t]["psnr"])
    if row["default_tv"] not in by:
        xh, _ = run(row["default_tv"], steps)
        row["default_psnr"] = image_metrics(xh, gt, mean, std, labels_hat=lab, labels_true=labels)["psnr"]
    else:
        row["default_psnr"] = by[row["default_tv"]]["psnr"]
    return row


def table(rows: list[dict]) -> str:
    """Means over seeds per (case, batch); the picked weights per seed in parentheses."""
    lines = ["| case | batch | seeds | default `ig` (TV) | `ig-auto`: matching rule | held-out rule | "
             "screen rule (1/4 budget) | oracle (ground truth) | rule - default | rule - oracle |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["case"], r["k"]), []).append(r)
    for (name, k), cells in groups.items():
        mean = {key: statistics.mean(c["tv"][c[key]]["psnr"] for c in cells)
                for key in ("rule", "holdout", "screen", "oracle")}
        d = statistics.mean(c["default_psnr"] for c in cells)
        picks = lambda key: "/".join(f"{c[key]:g}" for c in cells)  # noqa: E731
        cols = " | ".join(f"{mean[key]:.2f} ({picks(key)})" for key in ("rule", "holdout", "screen", "oracle"))
        lines.append(f"| {name} | {k} | {len(cells)} | {d:.2f} ({cells[0]['default_tv']:g}) | {cols} | "
                     f"{mean['rule'] - d:+.2f} | {mean['rule'] - mean['oracle']:+.2f} |")
    return "\n".join(lines)


def _numeric(row: dict) -> dict:
    """A cell as written to JSON (weights as strings) with its weights back as floats."""
    out = dict(row, tv={float(t): v for t, v in row["tv"].items()})
    for key in ("rule", "screen", "holdout", "oracle"):
        out[key] = float(row[key])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="all", help=f"comma-separated from {', '.join(CASES)} (or all)")
    p.add_argument("--batches", default="4,8")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--tvs", default="0.02,0.2,0.5,1.0,2.0")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write every cell here")
    p.add_argument("--render", default=None, help="only print the table of a --json file")
    args = p.parse_args(argv)
    if args.render:
        print(table([_numeric(r) for r in json.loads(Path(args.render).read_text())]))
        return 0
    names = list(CASES) if args.cases == "all" else args.cases.split(",")
    for n in names:
        if n not in CASES:
            p.error(f"--cases: {n!r} is not one of {', '.join(CASES)}")
    tvs = [float(t) for t in args.tvs.split(",")]
    torch.set_num_threads(args.threads)
    rows = []
    for n in names:
        for k in (int(b) for b in args.batches.split(",")):
            for seed in range(args.seeds):
                row = cell(CASES[n], seed, k, tvs, args.steps)
                row["tv"] = {str(t): v for t, v in row["tv"].items()}
                for key in ("rule", "screen", "holdout", "oracle"):
                    row[key] = str(row[key])
                print(json.dumps({a: row[a] for a in ("case", "k", "seed", "rule", "screen", "holdout", "oracle",
                                                      "default_psnr")}), flush=True)
                rows.append(row)
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=1))
    print(table([_numeric(r) for r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
