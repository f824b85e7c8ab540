"""Peer benchmark: fedsim's ``ig`` against breaching 0.1.2's ``invertinggradients`` on the same case.

    .venv/bin/python -m benchmarks.peers [--steps 300] [--seeds 3] [--models cnn,resnet18] [--batches 1,4,8,16]
                                         [--out docs/benchmarks/peers.md]

Both attackers get the same untrained model, the same FedSGD gradient of the same real CIFAR-10 images (the 20
test images shipped in the foolbox wheel), the same labels and the same iteration budget; both are scored by
``fedsim.core.metrics.images.image_metrics`` (label-aware optimal assignment, PSNR in pixel space [0, 1]).
Table (a) gives both the true labels; table (b) gives both the labels that ``restore_labels("ilrg-refine")``
(falling back to ``"ilrg"``) restores from the gradient. Time per iteration is wall time / iterations of each
attack, measured in the same process, one after the other, on the same threads.

breaching is a benchmark-only peer, never a dependency of fedsim: install it into the venv with
``pip install --no-deps breaching==0.1.2 hydra-core omegaconf antlr4-python3-runtime==4.9.3``. Without it,
the script says so and exits 0.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks import harness as h
from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import invert
from fedsim.core.data import load_victims
from fedsim.core.metrics.images import image_metrics
from fedsim.core.models.zoo import build_model


class SmallCNN(nn.Module):
    """A held-out victim (not in the model zoo): ReLU CNN with strided convolutions, 32x32 inputs."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        self.classifier = nn.Linear(4 * width * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def make_model(name: str, seed: int) -> nn.Module:
    """``cnn`` (SmallCNN), ``resnet18``, or a zoo model as ``name:activation[:bn]`` (e.g. ``lenet5:tanh``,
    ``convnet:relu:bn`` with BatchNorm)."""
    if name == "cnn":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return SmallCNN()
    if name == "resnet18":
        return build_model("resnet18", (3, 32, 32), 10, seed=seed)
    if ":" in name:
        zoo, act, *flags = name.split(":")
        options = {"batchnorm": True} if "bn" in flags else {}
        return build_model(zoo, (3, 32, 32), 10, seed=seed, activation=act, **options)
    raise ValueError(f"model {name!r} is not one of ('cnn', 'resnet18') or a zoo 'name:activation[:bn]'")


def case(model_name: str, k: int, seed: int):
    """(model in train mode, gradient, images in model space, labels, mean, std) of one cell and seed."""
    x, y, _, mean, std = load_victims("cifar10")
    idx = torch.tensor([(seed * 7 + i) % len(x) for i in range(k)])
    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    gt, labels = (x[idx] - m) / s, y[idx].clone()
    model = make_model(model_name, seed)
    model.train()
    grads = [g.detach() for g in batch_gradient(model, gt, labels)]
    return model, grads, gt, labels, mean, std


def restored_labels(model, grads, k: int) -> tuple[torch.Tensor, str]:
    from fedsim.attacks.labels import LABEL_METHODS, restore_labels

    method = "ilrg-refine" if "ilrg-refine" in LABEL_METHODS else "ilrg"
    res = restore_labels(method, model=model, gradients=grads, num_samples=k, input_shape=(3, 32, 32))
    return res.labels, method


def run_fedsim(model, grads, labels, k, steps, seed, mean, std, **options):
    t0, c0 = time.perf_counter(), time.process_time()
    x = invert("ig", model=model, gradients=grads, labels=labels, input_shape=(3, 32, 32), steps=steps,
               mean=mean, std=std, seed=seed, **options)
    return x.detach(), (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps


def have_breaching() -> bool:
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import breaching  # noqa: F401
        return True
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False


def run_breaching(model, grads, labels, k, steps, seed, mean, std):
    """breaching's ``invertinggradients`` attack config (all defaults but the iteration budget)."""
    import breaching
    from omegaconf import OmegaConf

    with contextlib.redirect_stdout(io.StringIO()):
        cfg = breaching.get_attack_config("invertinggradients")
    OmegaConf.set_struct(cfg, False)
    cfg.optim.max_iterations = steps
    cfg.optim.callback = 10 ** 9
    logging.getLogger("breaching").setLevel(logging.WARNING)
    attacker = breaching.attacks.prepare_attack(model, nn.CrossEntropyLoss(), cfg,
                                                dict(dtype=torch.float, device=torch.device("cpu")))
    meta = OmegaConf.create({"shape": [3, 32, 32], "mean": list(mean), "std": list(std), "modality": "vision",
                             "classes": 10})
    payload = [{"parameters": [p.detach() for p in model.parameters()], "buffers": None, "metadata": meta}]
    shared = [{"gradients": [g.clone() for g in grads], "buffers": None,
               "metadata": {"num_data_points": k, "labels": labels.clone(), "local_hyperparams": None}}]
    torch.manual_seed(seed)
    t0, c0 = time.perf_counter(), time.process_time()
    rec, _ = attacker.reconstruct(payload, shared, {}, dryrun=False)
    return rec["data"].detach(), (time.perf_counter() - t0) / steps, (time.process_time() - c0) / steps


def score(x, gt, labels, labels_true, mean, std) -> float:
    return image_metrics(x, gt, mean, std, labels_hat=labels, labels_true=labels_true)["psnr"]


def run_cell(model_name, k, seed, steps, label_source, tv=None, done=None):
    """One (model, batch, seed) cell for both attackers. ``done``: finished cells by (model, k, seed, steps,
    labels); a restored-label cell whose labels equal the true ones is the same computation as the given-label
    cell (same inputs, same seeds), so that cell's result is reused (``reused: true``) instead of re-run."""
    model, grads, gt, y, mean, std = case(model_name, k, seed)
    labels, method = (y, "given") if label_source == "given" else restored_labels(model, grads, k)
    labels = labels.sort().values
    twin = (done or {}).get((model_name, k, seed, steps, tuple(labels.tolist())))
    if twin is not None:
        return {**twin, "labels": method, "reused": True}
    options = {} if tv is None else {"regularizers": {"tv": tv}}
    xf, tf, cf = run_fedsim(model, grads, labels, k, steps, seed, mean, std, **options)
    xb, tb, cb = run_breaching(model, grads, labels, k, steps, seed, mean, std)
    label_right = int((labels == y.sort().values).sum())
    return {"fedsim": score(xf, gt, labels, y, mean, std), "breaching": score(xb, gt, labels, y, mean, std),
            "t_fedsim": tf, "t_breaching": tb, "c_fedsim": cf, "c_breaching": cb, "labels": method,
            "labels_right": label_right, "labels_sorted": labels.tolist()}


def spread(values) -> str:
    return f"{min(values):.1f}-{max(values):.1f}"


def _ratio(cells, kind: str) -> str:
    if not all(f"{kind}_fedsim" in c for c in cells):
        return "n/a"
    r = [c[f"{kind}_fedsim"] / c[f"{kind}_breaching"] for c in cells]
    return f"{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"


def _ms(seconds: float) -> str:
    ms = 1e3 * seconds
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}"


def table(rows) -> str:
    head = ("| model | batch | seeds | iters | labels (right of K, per seed) | fedsim `ig` PSNR mean (min-max) | "
            "breaching IG PSNR mean (min-max) | diff | wall ms/iter fedsim / breaching | wall ratio | "
            "CPU-time ratio |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (model_name, k, steps), cells in rows:
        f = [c["fedsim"] for c in cells]
        b = [c["breaching"] for c in cells]
        right = "/".join(str(c["labels_right"]) for c in cells)
        if any(c.get("reused") for c in cells):
            right += "; every label right: the given-label runs"
        lines.append(
            f"| {model_name} | {k} | {len(cells)} | {steps} | {cells[0]['labels']} ({right}) | "
            f"{statistics.mean(f):.2f} ({spread(f)}) | {statistics.mean(b):.2f} ({spread(b)}) | "
            f"{statistics.mean(f) - statistics.mean(b):+.2f} | "
            f"{_ms(statistics.median(c['t_fedsim'] for c in cells))} / "
            f"{_ms(statistics.median(c['t_breaching'] for c in cells))} | "
            f"{_ratio(cells, 't')} | {_ratio(cells, 'c')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = h.parser(__doc__, steps=300, seeds=3, batches="1,4,8,16", threads=1, json=None, render=None,
                 out=h.PAGES / "peers.md")
    p.add_argument("--models", default="cnn,resnet18")
    p.add_argument("--labels", default="given,restored")
    p.add_argument("--tv", type=float, default=None, help="override ig's TV weight (default: the method's)")
    args = h.parse(p, argv)
    if args.render:
        write(Path(args.out), [json.loads(Path(f).read_text()) for f in args.render])
        return 0
    if not have_breaching():
        print("breaching is not installed: skipping the peer benchmark. Install it (benchmark only) with\n"
              "  .venv/bin/pip install --no-deps breaching==0.1.2 hydra-core omegaconf "
              "antlr4-python3-runtime==4.9.3")
        return 0
    t_start = time.time()
    cells, done = [], {}
    for source in args.labels.split(","):
        for model_name in args.models.split(","):
            for k in (int(b) for b in args.batches.split(",")):
                for seed in range(args.seeds):
                    c = run_cell(model_name, k, seed, args.steps, source, args.tv, done)
                    c.update(source=source, model=model_name, k=k, seed=seed, steps=args.steps)
                    done.setdefault((model_name, k, seed, args.steps, tuple(c["labels_sorted"])), c)
                    print(f"[{source}] {model_name} K={k} seed={seed}: fedsim {c['fedsim']:.2f} dB "
                          f"{1e3 * c['t_fedsim']:.1f} ms/it | breaching {c['breaching']:.2f} dB "
                          f"{1e3 * c['t_breaching']:.1f} ms/it", flush=True)
                    cells.append(c)
    run = {"command": args.command, "minutes": (time.time() - t_start) / 60, "threads": args.threads,
           "cells": cells, "machine": h.machine()}
    if args.json:
        Path(args.json).write_text(json.dumps(run, indent=1))
    write(Path(args.out), [run])
    return 0


def write(path: Path, runs: list[dict]) -> None:
    text = """# Peer benchmark: fedsim `ig` vs breaching IG

breaching 0.1.2, `attack=invertinggradients` with its defaults except `optim.max_iterations` (= our `steps`).

Case: untrained victims in train mode (`SmallCNN` in benchmarks/peers.py: ReLU, 3 convs, two of them strided,
one linear layer; torchvision ResNet-18 with the CIFAR stem), FedSGD gradient of real CIFAR-10 test images (the
20 in the foolbox wheel; seed s takes images 7s, 7s+1, ... mod 20 and seeds the model), same gradient, labels,
iteration budget and init seed for both attackers. PSNR: mean over the batch after label-aware optimal
assignment (`fedsim.core.metrics.images.image_metrics`), then mean (min-max) over seeds. Time per iteration: wall
time / iterations of each run (fedsim's includes its set-up and final scoring pass), median over seeds; ratios
= fedsim / breaching per seed, median (min-max), for wall time and for the process's CPU time
(`time.process_time`). CPU, with the torch threads listed per run; the two attackers alternate cell by cell
in one process, so a change of the machine's load hits both, and the CPU-time ratio is the fairer comparison
on a shared machine (the findings say how loaded it was).

Runs (each reproducible with its command; `--render` of their `--json` files wrote this page):

"""
    for run in runs:
        text += f"- `{run['command']}`: {run['minutes']:.0f} min; {run['machine']}, {run['threads']} thread(s)\n"
    titles = {"given": "(a) labels given", "restored": "(b) labels restored by `ilrg-refine` from the gradient"}
    cells = [c for run in runs for c in run["cells"]]
    for source in dict.fromkeys(c["source"] for c in cells):
        groups: dict = {}
        for c in cells:
            if c["source"] == source:
                groups.setdefault((c["model"], c["k"], c["steps"]), []).append(c)
        text += f"\n## {titles.get(source, source)}\n\n{table(list(groups.items()))}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
