"""Inverting Gradients' TV weight: which weight, and can the server pick it itself? One question, seven studies.

    .venv/bin/python -m benchmarks.tv_weight STUDY --help

Studies (sub-commands; the PSNR is the benchmark's score against the true images, never the attack's choice):

- ``grid``: the self-tuning benchmark's held-out cases (CIFAR-100 victims of foolbox, image ``(7 seed + i) mod 20``,
  untrained models seeded by the seed, train mode, FedSGD gradient or FedAvg fake gradient, T = 4 full-batch
  steps, lr 0.05; labels given, sorted). ``ig`` runs once per TV weight of a grid; the matching **rule** keeps the
  run whose own gradient matches the shared one best (cosine, no regulariser: what the server can compute); the
  **screen** rule does so at a quarter of the budget; the **held-out** rule fits 80 % of the gradient's
  coordinates (``ig-masked``, half the budget) and keeps the weight that predicts the held-back 20 % best; the
  **oracle** keeps the best PSNR. Also ``ig`` at today's default weight (``ig_tv_for``).
- ``shadow``: ``ig-shadow`` on every cell of ``benchmarks/results/self_tuning.json`` (the grid study's output):
  the weight is chosen on a shadow update simulated from public images that are not the victims (``--aux same``:
  the foolbox CIFAR-100 images not in the batch; ``--aux cifar10``: the 20 foolbox CIFAR-10 images, labels as
  classes of the 100-class model), then the real update is attacked at that weight. Default, matching rule and
  oracle are read from the JSON (same seeds).
- ``mnist``: the rules on the presets' own MNIST models (``configs/demo.toml``'s ConvNet, ``demo_textbook``'s
  sigmoid LeNet-5, ``defense_fedsgd``'s width-8 ConvNet; victims ``mnist_subset`` train digits, K per seed,
  public split ``aux_split``): default ``ig``, ``ig-auto``, ``ig-shadow`` (also at 1/4 budget), oracle.
- ``defended``: under top-k and update noise, ``ig-shadow`` calibrated on a defended shadow update
  (``fedsim.attacks.defense_view``) against a clean one, the fixed default (TV 2) and the grid's oracle.
- ``peers``: ``ig-shadow`` on the peer benchmark's cells (``benchmarks/peers.py`` table (a)), beside fedsim ``ig``
  and breaching's IG read from ``benchmarks/results/peers_<model>.json``; public split: the 20 foolbox CIFAR-100
  images, labels mod 10.
- ``activation``: ``ig`` at several TV weights against the victim's activation, and breaching's IG on the same
  gradients (the evidence for ``ig_tv_for``; a weight ending in ``d`` decays with the step size). Needs breaching
  (benchmark-only; without it the study says so and exits 0).
- ``truth``: where the ``ig`` objective itself leads: ``ig`` started at the true images (+ N(0, 0.1)) against a
  random start at each TV weight, on the DP frontier's base (``configs/defense_fedsgd.toml``: MNIST, untrained
  ReLU ConvNet width 8, FedSGD batch 8, labels given; the victims of ``mnist``). The warm start uses the random
  start's matching-loss scale, so both optimise the same objective. Also ``gias`` (the live default VAE trained
  on the public split) from its random latent start, each result's server-side criterion (``grad-cosine@W0``),
  and the prior's capacity: the PSNR of the true images projected onto the decoder (Adam, 800 steps).

Examples (the docs' commands; 1 thread, a shared 2-core CPU unless said):

    nice -n 5 .venv/bin/python -m benchmarks.tv_weight grid --json benchmarks/results/self_tuning.json
    .venv/bin/python -m benchmarks.tv_weight grid --render benchmarks/results/self_tuning.json
    nice -n 5 .venv/bin/python -m benchmarks.tv_weight shadow --aux same --json benchmarks/results/shadow_tuning_same.json
    nice -n 5 .venv/bin/python -m benchmarks.tv_weight mnist --json benchmarks/results/shadow_mnist.json
    nice -n 5 .venv/bin/python -m benchmarks.tv_weight defended --json benchmarks/results/shadow_defended.json
    nice -n 5 .venv/bin/python -m benchmarks.tv_weight peers --json benchmarks/results/peers_shadow_cnn.json
    .venv/bin/python -m benchmarks.tv_weight activation --json benchmarks/results/tv_by_activation.json
    nice -n 5 .venv/bin/python -m benchmarks.tv_weight truth --seeds 0 1 2 --steps 400 --tv 0.2 2.0
"""

from __future__ import annotations

import copy
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from benchmarks import harness as h
from benchmarks import peers
from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import invert
from fedsim.attacks.inversion.methods import ig_tv_for
from fedsim.core.metrics.images import image_metrics

SELF_TUNING = h.RESULTS / "self_tuning.json"


# ============================================================================ grid: the self-tuning rules
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


def _cosine_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    dot = sum((x * y).sum() for x, y in zip(a, b))
    norm = torch.sqrt(sum((x * x).sum() for x in a)) * torch.sqrt(sum((y * y).sum() for y in b))
    return float(1 - dot / norm.clamp_min(1e-12))


def matching_distance(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, target: list[torch.Tensor]) -> float:
    """1 - cosine similarity of the dummy batch's gradient and the shared one (all layers as one vector)."""
    return _cosine_distance(batch_gradient(model, x, labels), target)


def heldout_split(target: list[torch.Tensor], fraction: float, seed: int) -> tuple[list[torch.Tensor], list]:
    """(target with a random ``fraction`` of its coordinates zeroed, boolean masks of the held-out coordinates)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    masks = [torch.rand(t.shape, generator=g) < fraction for t in target]
    return [t.masked_fill(m, 0.0) for t, m in zip(target, masks)], masks


def heldout_distance(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, target: list[torch.Tensor],
                     masks: list[torch.Tensor]) -> float:
    """1 - cosine similarity on the held-out coordinates only (those the fit never saw)."""
    grads = batch_gradient(model, x, labels)
    return _cosine_distance([torch.cat([g[m] for g, m in zip(grads, masks)])],
                            [torch.cat([t[m] for t, m in zip(target, masks)])])


def shared_gradient(case: Case, model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 0.05,
                    local_steps: int = 4) -> list[torch.Tensor]:
    """FedSGD: the batch gradient. FedAvg: the fake gradient (W0 - WT) / (T lr) of T full-batch steps."""
    if not case.fedavg:
        return [g.detach() for g in batch_gradient(model, x, y)]
    local = copy.deepcopy(model)
    w0 = [p.detach().clone() for p in local.parameters()]
    opt = torch.optim.SGD(local.parameters(), lr=lr)
    for _ in range(local_steps):
        opt.zero_grad()
        nn.functional.cross_entropy(local(x), y).backward()
        opt.step()
    return [(a - b.detach()) / (local_steps * lr) for a, b in zip(w0, local.parameters())]


def _case_model(case: Case, seed: int, k: int):
    gt, labels, classes, mean, std = h.foolbox_batch("cifar100", k, seed)
    torch.manual_seed(seed)
    model = case.build(classes).train()
    return model, shared_gradient(case, model, gt, labels), gt, labels, mean, std


def grid_cell(case: Case, seed: int, k: int, tvs: list[float], steps: int) -> dict:
    model, target, gt, labels, mean, std = _case_model(case, seed, k)
    lab = labels.sort().values
    row: dict = {"case": case.name, "seed": seed, "k": k, "default_tv": ig_tv_for(model), "tv": {}}
    common = dict(model=model, labels=lab, input_shape=(3, 32, 32), mean=mean, std=std, seed=seed)
    psnr = lambda xh: image_metrics(xh, gt, mean, std, labels_hat=lab, labels_true=labels)["psnr"]  # noqa: E731

    def run(tv: float, budget: int) -> tuple[torch.Tensor, float]:
        t0 = time.perf_counter()
        xh = invert("ig", gradients=target, steps=budget, regularizers={"tv": tv}, **common).detach()
        return xh, time.perf_counter() - t0

    fit, masks = heldout_split(target, 0.2, seed)
    for tv in tvs:
        xh, sec = run(tv, steps)
        sx, _ = run(tv, max(1, steps // 4))
        hx = invert("ig-masked", gradients=fit, steps=max(1, steps // 2), regularizers={"tv": tv},
                    **common).detach()
        row["tv"][str(tv)] = {"psnr": psnr(xh), "match": matching_distance(model, xh, lab, target), "seconds": sec,
                              "screen_match": matching_distance(model, sx, lab, target),
                              "heldout": heldout_distance(model, hx, lab, target, masks)}
    by = row["tv"]
    row["rule"] = min(by, key=lambda t: by[t]["match"])
    row["screen"] = min(by, key=lambda t: by[t]["screen_match"])
    row["holdout"] = min(by, key=lambda t: by[t]["heldout"])
    row["oracle"] = max(by, key=lambda t: by[t]["psnr"])
    d = str(float(row["default_tv"]))
    row["default_psnr"] = by[d]["psnr"] if d in by else psnr(run(row["default_tv"], steps)[0])
    return row


def grid_table(rows: list[dict]) -> str:
    """Means over seeds per (case, batch); the picked weights per seed in parentheses."""
    rules = ("rule", "holdout", "screen", "oracle")
    out = []
    for (name, k), cells in h.groups(rows, "case", "k").items():
        m = {key: h.mean(cells, lambda c, key=key: c["tv"][c[key]]["psnr"]) for key in rules}
        d = h.mean(cells, "default_psnr")
        out.append([name, k, len(cells), f"{d:.2f} ({cells[0]['default_tv']:g})",
                    *(f"{m[key]:.2f} ({h.picks(cells, key)})" for key in rules),
                    f"{m['rule'] - d:+.2f}", f"{m['rule'] - m['oracle']:+.2f}"])
    return h.markdown(["case", "batch", "seeds", "default `ig` (TV)", "`ig-auto`: matching rule", "held-out rule",
                       "screen rule (1/4 budget)", "oracle (ground truth)", "rule - default", "rule - oracle"], out)


def grid(args) -> str:
    names = h.choose(args.parser, "--cases", args.cases, CASES)
    tvs = h.floats(args.tvs)
    rows: list[dict] = []
    for n in names:
        for k in h.ints(args.batches):
            for seed in range(args.seeds):
                h.record(rows, grid_cell(CASES[n], seed, k, tvs, args.steps), args.json, args.command_line,
                         show=("case", "k", "seed", "rule", "screen", "holdout", "oracle", "default_psnr"))
    return grid_table(rows)


# ============================================================================ shadow: ig-shadow on the grid's cells
def shadow_cell(row: dict, aux_name: str, steps: int, fraction: float = 1.0, extend: int = 0,
                lr_grid: tuple[float, ...] = (0.1,)) -> dict:
    from fedsim.attacks.inversion.shadow import choose_tv

    case, seed, k = CASES[row["case"]], int(row["seed"]), int(row["k"])
    xn, y, classes, mean, std = h.normalised_victims("cifar100")
    idx = torch.tensor([(seed * 7 + i) % len(xn) for i in range(k)])
    gt, labels = xn[idx], y[idx].clone()
    if aux_name == "same":
        rest = torch.tensor([i for i in range(len(xn)) if i not in set(idx.tolist())])
        aux = (xn[rest], y[rest])
    else:
        ax, ay, *_ = h.normalised_victims("cifar10")
        aux = (ax, ay)
    torch.manual_seed(seed)
    model = case.build(classes).train()
    target = shared_gradient(case, model, gt, labels)
    lab = labels.sort().values
    schedule = {"lr": 0.05, "local_steps": 4 if case.fedavg else 1, "local_batch_size": k}
    by = row["tv"]
    read = {"default": row["default_psnr"], "rule": by[row["rule"]]["psnr"], "rule_tv": float(row["rule"]),
            "oracle": by[row["oracle"]]["psnr"], "oracle_tv": float(row["oracle"])}
    t0 = time.perf_counter()
    if fraction < 1.0:  # the pick only, at a fraction of the budget; the real run is ig at that weight (same seed and
        # steps as the JSON's grid run, so its PSNR is read from there: test_inversion_shadow shows equality)
        chosen, psnrs = choose_tv(model=model, aux=aux, labels=lab, k=k, input_shape=(3, 32, 32),
                                  steps=max(1, int(steps * fraction)), mean=mean, std=std, seed=seed,
                                  tv_grid=[float(t) for t in by], schedule=schedule)
        return {"case": row["case"], "seed": seed, "k": k, "aux": f"{aux_name}, shadow at {fraction:g} budget",
                "shadow_tv": chosen, "shadow_psnr_by_tv": psnrs, "psnr": by[str(float(chosen))]["psnr"],
                "seconds": time.perf_counter() - t0, "json_psnr_at_pick": by[str(float(chosen))]["psnr"], **read}
    common = dict(model=model, gradients=target, labels=lab, input_shape=(3, 32, 32), steps=steps, mean=mean,
                  std=std, seed=seed, **schedule)
    trace = invert("ig-shadow", aux=aux, return_result=True, extend_edges=extend, lr_grid=lr_grid, **common)
    seconds = time.perf_counter() - t0
    score = lambda xh: image_metrics(xh.detach(), gt, mean, std, labels_hat=lab,  # noqa: E731
                                     labels_true=labels)["psnr"]
    psnr = score(trace.inputs)
    # weights the edge extension tried beyond the JSON's grid: their real-run PSNR (ig, same seed and steps), so the
    # oracle over every weight the rule could pick is known
    run_ig = lambda tv, attack_lr=0.1: score(invert("ig", regularizers={"tv": tv}, attack_lr=attack_lr,  # noqa: E731
                                                    **common))
    chosen_lr, chosen_tv = trace.options["attack_lr_chosen"], trace.options["tv_chosen"]
    extra, beyond = {}, {}
    if len(lr_grid) > 1:  # the step size is chosen too: every step size of the grid at the chosen TV, real runs
        at_tv = {str(a): psnr if a == chosen_lr else run_ig(chosen_tv, a) for a in lr_grid}
        extra = {"lr_chosen": chosen_lr, "psnr_by_lr_at_tv": at_tv, "lr_oracle_at_tv": float(max(at_tv,
                                                                                               key=at_tv.get))}
    else:
        beyond = {tv: run_ig(tv) for tv in trace.options["tv_shadow_psnr"] if str(float(tv)) not in by}
    tried = {**{float(t): by[t]["psnr"] for t in by}, **beyond}
    oracle_tried = max(tried, key=tried.get)
    return {**extra, "case": row["case"], "seed": seed, "k": k,
            "aux": aux_name + (f", extend {extend}" if extend else "") + (
                f", step sizes {'/'.join(f'{a:g}' for a in lr_grid)}" if len(lr_grid) > 1 else ""),
            "beyond_grid": beyond, "oracle_tried": tried[oracle_tried], "oracle_tried_tv": oracle_tried,
            "shadow_tv": chosen_tv, "shadow_psnr_by_tv": trace.options["tv_shadow_psnr"], "psnr": psnr,
            "seconds": seconds, "json_psnr_at_pick": by.get(str(float(chosen_tv)), {}).get("psnr"), **read}


def _shadow_summary(run: list[dict]) -> list[str]:
    aux = run[0]["aux"]
    d = [c["psnr"] - c["oracle"] for c in run]
    sec = [c["seconds"] for c in run]
    lines = ["", f"aux {aux}: shadow - oracle over {len(run)} cells mean {h.spread(d, signed=True)} dB; oracle's weight picked in "
                 f"{sum(c['shadow_tv'] == c['oracle_tv'] for c in run)}/{len(run)}; shadow - matching rule mean "
                 f"{h.mean(run, lambda c: c['psnr'] - c['rule']):+.2f} dB; shadow - default mean "
                 f"{h.mean(run, lambda c: c['psnr'] - c['default']):+.2f} dB; seconds per attack {h.spread(sec, 0)}"]
    if any("lr_chosen" in c for c in run):
        e = [c["psnr"] - c["psnr_by_lr_at_tv"][str(c["lr_oracle_at_tv"])] for c in run]
        counts: dict = {}
        for c in run:
            counts[c["lr_chosen"]] = counts.get(c["lr_chosen"], 0) + 1
        lines.append(f"aux {aux}: step sizes picked " + ", ".join(f"{a:g} in {n}" for a, n in sorted(counts.items()))
                     + f"; shadow - best step size at the chosen TV mean {h.spread(e, signed=True)} dB, that step size picked in "
                     f"{sum(float(c['lr_chosen']) == float(c['lr_oracle_at_tv']) for c in run)}/{len(run)}")
    if any(c.get("beyond_grid") for c in run):
        e = [c["psnr"] - c["oracle_tried"] for c in run]
        lines.append(f"aux {aux}: weights tried beyond the grid in {sum(bool(c.get('beyond_grid')) for c in run)}"
                     f"/{len(run)} cells; shadow - oracle over every weight tried mean {h.spread(e, signed=True)} dB; that oracle's "
                     f"weight picked in {sum(c['shadow_tv'] == c['oracle_tried_tv'] for c in run)}/{len(run)}; "
                     f"shadow - grid oracle mean {statistics.mean(d):+.2f} dB")
    return lines


def shadow_table(runs: list[list[dict]]) -> str:
    """Means over seeds per (case, batch) for one or more --aux runs."""
    header = ["case", "batch", "default `ig`", "`ig-auto` (matching)",
              *(f"`ig-shadow`, aux {r[0]['aux']} (TV)" for r in runs), "oracle (TV)",
              *(f"shadow({r[0]['aux']}) - oracle" for r in runs)]
    out = []
    for key, first in h.groups(runs[0], "case", "k").items():
        per_run = [[c for c in run if (c["case"], c["k"]) == key] for run in runs]
        out.append([*key, f"{h.mean(first, 'default'):.2f}", f"{h.mean(first, 'rule'):.2f} "
                    f"({h.picks(first, 'rule_tv')})", *(f"{h.mean(g, 'psnr'):.2f} ({h.picks(g, 'shadow_tv')})"
                                                        for g in per_run),
                    f"{h.mean(first, 'oracle'):.2f} ({h.picks(first, 'oracle_tv')})",
                    *(f"{h.mean(g, 'psnr') - h.mean(first, 'oracle'):+.2f}" for g in per_run)])
    return "\n".join([h.markdown(header, out), *(line for run in runs for line in _shadow_summary(run))])


def shadow(args) -> str:
    rows = h.read_rows(SELF_TUNING)
    if args.cases != "all":
        rows = [r for r in rows if r["case"] in args.cases.split(",")]
    out: list[dict] = []
    for row in rows:
        h.record(out, shadow_cell(row, args.aux, args.steps, args.shadow_fraction, args.extend,
                                  tuple(h.floats(args.lr_grid))), args.json, args.command_line,
                 show=("case", "k", "seed", "shadow_tv", "psnr", "json_psnr_at_pick", "rule", "oracle", "seconds"))
    return shadow_table([out])


# ============================================================================ mnist: the presets' own models
@dataclass(frozen=True)
class MnistCase:
    name: str
    model: str
    k: int
    options: dict = field(default_factory=dict)
    local_steps: int = 1
    lr: float = 0.1


MNIST_CASES = {c.name: c for c in (
    MnistCase("convnet-w8-relu (defense_fedsgd)", "convnet", 8, {"activation": "relu", "width": 8}),
    MnistCase("convnet-relu (demo)", "convnet", 8, {"activation": "relu"}),
    MnistCase("lenet5-sigmoid (demo_textbook)", "lenet5", 4, {"activation": "sigmoid", "width": 12}),
    MnistCase("convnet-w8-relu FedAvg T=4", "convnet", 8, {"activation": "relu", "width": 8}, local_steps=4,
              lr=0.05),
)}


def mnist_cell(case: MnistCase, seed: int, steps: int, data, aux) -> dict:
    from fedsim.attacks.inversion.autotune import TV_GRID
    from fedsim.attacks.inversion.shadow import choose_tv, simulate_update
    from fedsim.core.models.zoo import build_model

    x, y = h.mnist_batch(data, case.k, seed)
    model = build_model(case.model, data.input_shape, data.num_classes, seed=seed, **case.options).train()
    schedule = {"lr": case.lr, "local_steps": case.local_steps, "local_batch_size": case.k}
    target = simulate_update(model, x, y, **schedule)
    lab = y.sort().values
    common = dict(model=model, gradients=target, labels=lab, input_shape=data.input_shape, steps=steps,
                  mean=data.mean, std=data.std, seed=seed)
    score = lambda xh: image_metrics(xh.detach(), x, data.mean, data.std, labels_hat=lab,  # noqa: E731
                                     labels_true=y)["psnr"]
    row: dict = {"case": case.name, "seed": seed, "k": case.k, "default_tv": ig_tv_for(model), "tv": {}}
    for tv in TV_GRID:
        t0 = time.perf_counter()
        tr = invert("ig", regularizers={"tv": tv}, return_result=True, **common)
        row["tv"][str(tv)] = {"psnr": score(tr.inputs), "match": tr.best_loss, "seconds": time.perf_counter() - t0}
    by = row["tv"]
    row["rule"] = min(by, key=lambda t: (by[t]["match"], float(t)))
    row["oracle"] = max(by, key=lambda t: by[t]["psnr"])
    d = str(float(row["default_tv"]))
    row["default_psnr"] = by[d]["psnr"] if d in by else score(
        invert("ig", regularizers={"tv": row["default_tv"]}, **common))
    aux_n = (data.normalize(aux[0]), aux[1])
    t0 = time.perf_counter()
    tr = invert("ig-shadow", aux=aux_n, return_result=True, **schedule, **common)
    row["shadow_seconds"] = time.perf_counter() - t0
    row["shadow"] = str(float(tr.options["tv_chosen"]))
    row["shadow_psnr"] = score(tr.inputs)
    row["shadow_by_tv"] = {str(k): v for k, v in tr.options["tv_shadow_psnr"].items()}
    # weights the shadow's edge extension tried beyond the grid: their real-run PSNR, for the oracle over every
    # weight the rule could have picked
    row["beyond"] = {str(float(t)): score(invert("ig", regularizers={"tv": float(t)}, **common))
                     for t in tr.options["tv_shadow_psnr"] if str(float(t)) not in by}
    tried = {**{t: v["psnr"] for t, v in by.items()}, **row["beyond"]}
    row["oracle_tried"] = max(tried, key=tried.get)
    row["oracle_tried_psnr"] = tried[row["oracle_tried"]]
    # the shadow grid at a quarter of the budget (pick only; the real run is the grid's ig run at that weight)
    t0 = time.perf_counter()
    quick, _ = choose_tv(model=model, aux=aux_n, labels=lab, k=case.k, input_shape=data.input_shape,
                         steps=max(1, steps // 4), mean=data.mean, std=data.std, seed=seed, tv_grid=TV_GRID,
                         schedule=schedule)
    row["quick_seconds"] = time.perf_counter() - t0 + by[str(float(quick))]["seconds"]
    row["quick"] = str(float(quick))
    return row


def mnist_table(rows: list[dict]) -> str:
    out = []
    for (name,), cells in h.groups(rows, "case").items():
        at = lambda key: h.mean(cells, lambda c: c["tv"][c[key]]["psnr"])  # noqa: E731
        rule, oracle, quick = at("rule"), at("oracle"), at("quick")
        shadow_, default = h.mean(cells, "shadow_psnr"), h.mean(cells, "default_psnr")
        tried = h.mean(cells, lambda c: c.get("oracle_tried_psnr", c["tv"][c["oracle"]]["psnr"]))
        out.append([name, cells[0]["k"], len(cells), f"{default:.2f} ({cells[0]['default_tv']:g})",
                    f"{rule:.2f} ({h.picks(cells, 'rule')})", f"{shadow_:.2f} ({h.picks(cells, 'shadow')})",
                    f"{quick:.2f} ({h.picks(cells, 'quick')})", f"{oracle:.2f} ({h.picks(cells, 'oracle')})",
                    f"{tried:.2f} ({h.picks(cells, lambda c: c.get('oracle_tried', c['oracle']))})",
                    f"{shadow_ - oracle:+.2f}", f"{shadow_ - tried:+.2f}", f"{shadow_ - rule:+.2f}",
                    f"{shadow_ - default:+.2f}"])
    sec = [r["shadow_seconds"] for r in rows]
    qsec = [r["quick_seconds"] for r in rows]
    ig = [v["seconds"] for r in rows for v in r["tv"].values()]
    return "\n".join([h.markdown(
        ["case", "batch", "seeds", "default `ig` (TV)", "`ig-auto`: matching (TV)", "`ig-shadow` (TV)",
         "`ig-shadow`, shadow at 1/4 budget (TV)", "oracle (TV)", "oracle over every weight tried (TV)",
         "shadow - oracle", "shadow - oracle tried", "shadow - matching", "shadow - default"], out), "",
        f"seconds per `ig-shadow` attack {h.spread(sec, 0)}, at 1/4 budget {h.spread(qsec, 0)}, per `ig` run "
        f"{h.spread(ig, 1)}"])


def _mnist_data():
    from fedsim.attacks.generative import aux_split
    from fedsim.core.data import load_dataset

    data = load_dataset("mnist_subset")
    return data, aux_split(data)


def mnist(args) -> str:
    cases = list(MNIST_CASES.values())
    if args.cases != "all":
        cases = [cases[i] for i in h.ints(args.cases)]
    data, aux = _mnist_data()
    rows: list[dict] = []
    for case in cases:
        for seed in range(args.seeds):
            h.record(rows, mnist_cell(case, seed, args.steps, data, aux), args.json, args.command_line,
                     show=("case", "seed", "rule", "shadow", "oracle", "default_psnr", "shadow_psnr",
                           "shadow_seconds"))
    return mnist_table(rows)


# ============================================================================ defended: calibrate on a defended shadow
DEFENDED_MODELS = {"convnet-relu (demo)": {"activation": "relu"},
                   "convnet-w8-relu (defense sweeps)": {"activation": "relu", "width": 8}}
DEFENDED_K, DEFENDED_LR = 8, 0.1


def _defenses() -> dict:
    from fedsim.core.defense.update import UpdateDefense

    return {"top-k 0.1": UpdateDefense(topk_ratio=0.1), "top-k 0.01": UpdateDefense(topk_ratio=0.01),
            "update noise 0.005": UpdateDefense(noise_std=0.005)}


def defended_cell(model_name: str, defense_name: str, seed: int, steps: int, data, aux) -> dict:
    from fedsim.attacks.defense_view import ShadowDefense
    from fedsim.attacks.inversion.autotune import TV_GRID
    from fedsim.attacks.inversion.shadow import EXTEND_EDGES, choose_tv, simulate_update
    from fedsim.core.models.zoo import build_model

    k, lr = DEFENDED_K, DEFENDED_LR
    x, y = h.mnist_batch(data, k, seed)
    model = build_model("convnet", data.input_shape, data.num_classes, seed=seed,
                        **DEFENDED_MODELS[model_name]).train()
    defense = ShadowDefense(update=_defenses()[defense_name])
    target = defense.on_fake_gradient(simulate_update(model, x, y, lr=lr), lr=lr, local_steps=1, seed=seed)
    lab = y.sort().values
    distance = "cosine-masked" if defense.sparsifies else "cosine"
    common = dict(model=model, gradients=target, labels=lab, input_shape=data.input_shape, steps=steps,
                  mean=data.mean, std=data.std, seed=seed, distance=distance)
    score = lambda xh: image_metrics(xh.detach(), x, data.mean, data.std, labels_hat=lab,  # noqa: E731
                                     labels_true=y)["psnr"]
    row: dict = {"model": model_name, "defense": defense_name, "seed": seed, "distance": distance, "tv": {}}
    t0 = time.perf_counter()
    for tv in TV_GRID:
        row["tv"][str(float(tv))] = score(invert("ig", regularizers={"tv": tv}, **common))
    row["grid_seconds"] = time.perf_counter() - t0
    pick_args = dict(model=model, aux=(data.normalize(aux[0]), aux[1]), labels=lab, k=k,
                     input_shape=data.input_shape, steps=steps, mean=data.mean, std=data.std, seed=seed,
                     tv_grid=TV_GRID, extend_edges=EXTEND_EDGES, distance=distance,
                     schedule={"lr": lr, "local_steps": 1, "local_batch_size": k})
    for key, d in (("shadow_clean", None), ("shadow_defended", defense)):
        t0 = time.perf_counter()
        chosen, by = choose_tv(defense=d, **pick_args)
        name = str(float(chosen))
        if name not in row["tv"]:
            row["tv"][name] = score(invert("ig", regularizers={"tv": chosen}, **common))
        row[key] = {"tv": chosen, "psnr": row["tv"][name], "seconds": time.perf_counter() - t0,
                    "shadow_psnr": {str(t): v for t, v in by.items()}}
    row["default"] = row["tv"]["2.0"]
    row["oracle_tv"] = max((t for t in row["tv"] if float(t) in TV_GRID), key=lambda t: row["tv"][t])
    row["oracle"] = row["tv"][row["oracle_tv"]]
    return row


def defended_table(rows: list[dict]) -> str:
    out = []
    for key, cells in h.groups(rows, "model", "defense").items():
        clean = h.mean(cells, lambda c: c["shadow_clean"]["psnr"])
        dfd = h.mean(cells, lambda c: c["shadow_defended"]["psnr"])
        oracle, default = h.mean(cells, "oracle"), h.mean(cells, "default")
        out.append([*key, len(cells), f"{default:.2f}",
                    f"{clean:.2f} ({h.picks(cells, lambda c: c['shadow_clean']['tv'])})",
                    f"{dfd:.2f} ({h.picks(cells, lambda c: c['shadow_defended']['tv'])})",
                    f"{oracle:.2f} ({h.picks(cells, 'oracle_tv')})", f"{dfd - clean:+.2f}", f"{dfd - oracle:+.2f}",
                    f"{dfd - default:+.2f}"])
    d = [r["shadow_defended"]["psnr"] - r["shadow_clean"]["psnr"] for r in rows]
    o = [r["shadow_defended"]["psnr"] - r["oracle"] for r in rows]
    sec = [r["shadow_defended"]["seconds"] for r in rows]
    return "\n".join([h.markdown(
        ["model", "defense", "seeds", "default TV 2", "shadow, clean calibration (TV)",
         "shadow, defended calibration (TV)", "grid oracle (TV)", "defended - clean", "defended - oracle",
         "defended - default"], out), "",
        f"over {len(rows)} cells: defended - clean calibration mean {h.spread(d, signed=True)} dB, better in "
        f"{sum(v > 0.05 for v in d)}, worse in {sum(v < -0.05 for v in d)}; defended - grid oracle mean "
        f"{h.spread(o, signed=True)} dB; seconds per defended calibration {h.spread(sec, 0)}"])


def defended(args) -> str:
    data, aux = _mnist_data()
    rows: list[dict] = []
    for model_name in DEFENDED_MODELS:
        for defense_name in _defenses():
            for seed in range(args.seeds):
                r = defended_cell(model_name, defense_name, seed, args.steps, data, aux)
                r["psnr"] = [r["shadow_clean"]["psnr"], r["shadow_defended"]["psnr"], r["oracle"]]
                h.record(rows, r, args.json, args.command_line, show=("model", "defense", "seed", "psnr"))
                del r["psnr"]
    return defended_table(rows)


# ============================================================================ peers: ig-shadow beside breaching
def peers_public_split(mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """The 20 foolbox CIFAR-100 images in the victims' model space (their ``mean``, ``std``), labels mod 10."""
    from fedsim.core.data.victims import load_victims

    x, y, *_ = load_victims("cifar100")
    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    return (x - m) / s, y % 10


def committed_peer_cells(model: str) -> dict:
    cells = json.loads((h.RESULTS / f"peers_{model}.json").read_text())["cells"]
    return {(c["k"], c["seed"], c["steps"]): c for c in cells if c.get("source", c["labels"]) == "given"}


def peers_cell(model_name: str, k: int, seed: int, steps: int, ref: dict, peer_steps: int | None = None) -> dict:
    """One cell; breaching's PSNR is read at ``peer_steps`` (default ``steps``: equal budgets; twice ``steps``:
    fedsim at half breaching's budget)."""
    model, grads, gt, y, mean, std = peers.case(model_name, k, seed)
    labels = y.sort().values
    common = dict(model=model, gradients=grads, labels=labels, input_shape=(3, 32, 32), steps=steps, mean=mean,
                  std=std, seed=seed)
    t0 = time.perf_counter()
    trace = invert("ig-shadow", aux=peers_public_split(mean, std), return_result=True, lr=0.1, local_steps=1,
                   local_batch_size=k, **common)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = invert("ig", **common).detach()
    ig_seconds = time.perf_counter() - t0
    peer_steps = int(peer_steps or steps)
    c = ref[(k, seed, peer_steps)]
    return {"model": model_name, "k": k, "seed": seed, "steps": steps, "tv": trace.options["tv_chosen"],
            "attack_lr": trace.options.get("attack_lr_chosen", 0.1), "breaching_steps": peer_steps,
            "shadow": peers.score(trace.inputs.detach(), gt, labels, y, mean, std),
            "ig": peers.score(plain, gt, labels, y, mean, std),
            "ig_committed": c["fedsim"] if peer_steps == steps else None, "breaching": c["breaching"],
            "seconds": seconds, "ig_seconds": ig_seconds}


def peers_table(rows: list[dict]) -> str:
    out = []
    for r in rows:
        r.setdefault("breaching_steps", r["steps"])
    for key, cells in h.groups(rows, "model", "k", "steps", "breaching_steps").items():
        m = lambda f: h.mean(cells, f)  # noqa: E731
        tvs = "/".join(f"{c['tv']:g}" + (f", {c['attack_lr']:g}" if "attack_lr" in c else "") for c in cells)
        committed = f"{m('ig_committed'):.2f}" if all(c["ig_committed"] is not None for c in cells) else "-"
        out.append([key[0], key[1], len(cells), f"{key[2]} / {key[3]}", f"{m('ig'):.2f}; {committed}",
                    f"{m('shadow'):.2f} ({tvs})", f"{m('breaching'):.2f}", f"{m('shadow') - m('breaching'):+.2f}",
                    f"{m('shadow') - m('ig'):+.2f}", f"{m('seconds'):.0f} / {m('ig_seconds'):.0f}"])
    return h.markdown(["model", "batch", "seeds", "iters fedsim / breaching", "fedsim `ig` (default TV; committed run)",
                       "fedsim `ig-shadow` (TV, step size per seed)", "breaching IG (committed run)",
                       "`ig-shadow` - breaching", "`ig-shadow` - `ig`", "seconds `ig-shadow` / `ig`"], out)


def peers_study(args) -> str:
    rows: list[dict] = []
    for model_name in args.models.split(","):
        ref = committed_peer_cells(model_name)
        for k in h.ints(args.batches):
            for seed in range(args.seeds):
                h.record(rows, peers_cell(model_name, k, seed, args.steps, ref, args.breaching_steps), args.json,
                         args.command_line)
    return peers_table(rows)


# ============================================================================ activation: TV weight by activation
def activation_cell(spec: str, seed: int, k: int, tvs: list[str], steps: int) -> dict:
    model, grads, gt, labels, mean, std = peers.case(spec, k, seed)  # spec: zoo "name:activation[:bn]"
    lab = labels.sort().values
    row: dict = {"model": spec, "seed": seed, "k": k}
    for tv in tvs:
        xf, _, _ = peers.run_fedsim(model, grads, lab, k, steps, seed, mean, std,
                                    regularizers={"tv": float(tv.rstrip("d"))}, regularizer_decay=tv.endswith("d"))
        row[f"tv {tv}"] = peers.score(xf, gt, lab, labels, mean, std)
    xb, _, _ = peers.run_breaching(model, grads, lab, k, steps, seed, mean, std)
    row["breaching"] = peers.score(xb, gt, lab, labels, mean, std)
    return row


def activation_table(rows: list[dict], tvs: list[str]) -> str:
    cols = [f"tv {tv}" for tv in tvs] + ["breaching"]
    out = [[spec, k, len(cells), *(f"{h.mean(cells, c):.2f}" for c in cols)]
           for (spec, k), cells in h.groups(rows, "model", "k").items()]
    return h.markdown(["model:activation", "batch", "seeds", *(c if c == "breaching" else f"`ig` {c}"
                                                                for c in cols)], out)


def activation(args) -> str:
    if not peers.have_breaching():
        return "breaching is not installed: skipping (see benchmarks/peers.py for the benchmark-only install)"
    tvs = args.tvs.split(",")
    for tv in tvs:
        try:
            float(tv.rstrip("d"))
        except ValueError:
            args.parser.error(f"--tvs: {tv!r} is not a number (optionally followed by d)")
    rows: list[dict] = []
    for spec in args.models.split(","):
        for seed in range(args.seeds):
            for k in h.ints(args.batches):
                h.record(rows, activation_cell(spec, seed, k, tvs, args.steps), args.json, args.command_line)
    return activation_table(rows, tvs)


# ============================================================================ truth: the objective at the truth
FRONTIER_MODEL_OPTIONS = {"activation": "relu", "width": 8}  # configs/defense_fedsgd.toml's ConvNet


def projection_psnr(prior, pixels: torch.Tensor, steps: int = 800) -> float:
    """Mean PSNR of ``pixels`` [K, C, H, W] in [0, 1] after projection onto the prior's decoder."""
    from fedsim.core.metrics.images import psnr_matrix

    z = torch.zeros(len(pixels), prior.latent_dim, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        (prior.decoder(z).view_as(pixels) - pixels).pow(2).sum().backward()
        opt.step()
    with torch.no_grad():
        return float(psnr_matrix(prior.decoder(z).view_as(pixels), pixels).diagonal().mean())


def truth_cell(data, seed: int, steps: int, tvs: list[float], prior, variants: list[dict], model_name: str,
               model_options: dict, k: int = 8) -> dict:
    from fedsim.attacks.inversion.criterion import gradient_cosine_distance
    from fedsim.attacks.inversion.optim import init_dummy
    from fedsim.attacks.inversion.shadow import simulate_update
    from fedsim.core.models.zoo import build_model

    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(4321))
    idx = order[k * seed:k * seed + k]
    perm = data.train_y[idx].argsort(stable=True)  # the attack's images are in label order; the warm start too
    x, y = h.mnist_batch(data, k, seed)
    x, y = x[perm], y[perm]
    model = build_model(model_name, data.input_shape, data.num_classes, seed=seed, **model_options).train()
    target = simulate_update(model, x, y, lr=0.1, local_steps=1, local_batch_size=k)
    common = dict(model=model, gradients=target, labels=y, input_shape=data.input_shape, steps=steps,
                  mean=data.mean, std=data.std, seed=seed, return_result=True)
    psnr = lambda xh: image_metrics(xh.detach(), x, data.mean, data.std, labels_hat=y, labels_true=y)["psnr"]  # noqa: E731
    crit = lambda xh: gradient_cosine_distance(model, xh, y, target)  # noqa: E731
    mean, std = torch.tensor(data.mean).view(-1, 1, 1), torch.tensor(data.std).view(-1, 1, 1)
    random0 = init_dummy("randn", (1, k) + tuple(data.input_shape), mean, std, torch.Generator().manual_seed(seed))[0]
    scale = crit(random0)  # the matching loss the engine divides by in a random-start run
    start = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(100 + seed))
    row = {"seed": seed, "start_psnr": psnr(start), "truth_criterion": crit(x), "tv": {}}
    for tv in tvs:
        rand = invert("ig", regularizers={"tv": tv}, **common)
        warm = invert("ig", regularizers={"tv": tv * scale}, normalize_match=False, init_inputs=start, **common)
        row["tv"][str(tv)] = {"random_psnr": psnr(rand.inputs), "random_criterion": crit(rand.inputs),
                              "warm_psnr": psnr(warm.inputs), "warm_criterion": crit(warm.inputs)}
    row["projection_psnr"] = projection_psnr(prior, data.train_x[idx][perm].float())
    row["gias"] = []
    for opts in variants:
        t0 = time.perf_counter()
        g = invert("gias", prior=prior, **common, **opts)
        row["gias"].append({"psnr": psnr(g.inputs), "criterion": crit(g.inputs), "seconds": time.perf_counter() - t0})
    return row


def truth(args) -> str:
    from fedsim.attacks.generative import get_prior

    model_options = (json.loads(args.model_options) if args.model_options
                     else FRONTIER_MODEL_OPTIONS if args.model == "convnet" else {})
    variants = [json.loads(v) for v in args.gias]
    data, aux = _mnist_data()
    settings = dict(shift_augment=args.prior_shift, steps=args.prior_steps, arch=args.prior_arch,
                    hidden=args.prior_hidden)
    with tempfile.TemporaryDirectory() as tmp:  # get_prior keeps a current file and retrains a missing or stale one
        prior = get_prior(args.prior_path or Path(tmp) / "vae.safetensors", aux_images=aux[0],
                          dataset="mnist_subset", **settings)
        print(f"prior: {prior.settings}, " + (f"trained in {prior.train_seconds:.0f} s" if prior.train_seconds
                                              else f"loaded from {args.prior_path}"))
    rows: list[dict] = []
    for s in args.seeds:
        h.record(rows, truth_cell(data, s, args.steps, args.tv, prior, variants, args.model, model_options),
                 args.json, args.command_line, show=("seed", "start_psnr", "projection_psnr"))
    lines = [f"victim model: {args.model} {model_options or ''}",
             f"`ig` {args.steps} iterations, seeds {' '.join(map(str, args.seeds))}; warm start at "
             f"{h.mean(rows, 'start_psnr'):.1f} dB (truth + N(0, 0.1)); criterion at the truth "
             f"{max(r['truth_criterion'] for r in rows):.1e} at most", ""]
    tv_rows = []
    for tv in args.tv:
        m = lambda key: h.mean(rows, lambda r: r["tv"][str(tv)][key])  # noqa: E731
        per = lambda key: " / ".join(f"{r['tv'][str(tv)][key]:.1f}" for r in rows)  # noqa: E731
        tv_rows.append([f"{tv:g}", f"{m('random_psnr'):.2f} ({per('random_psnr')})", f"{m('random_criterion'):.4f}",
                        f"{m('warm_psnr'):.2f} ({per('warm_psnr')})", f"{m('warm_criterion'):.4f}"])
    per_proj = " / ".join(f"{r['projection_psnr']:.1f}" for r in rows)
    lines += [h.markdown(["TV", "random start: PSNR", "criterion", "start at the truth: PSNR", "criterion"], tv_rows),
              "", f"prior {args.prior_arch}, shift {args.prior_shift}, {args.prior_steps} steps: capacity (truth "
                  f"projected) {h.mean(rows, 'projection_psnr'):.2f} dB ({per_proj})", ""]
    gias_rows = []
    for i, opts in enumerate(variants):
        gm = lambda key: h.mean(rows, lambda r: r["gias"][i][key])  # noqa: E731
        per_seed = " / ".join(f"{r['gias'][i]['psnr']:.1f}" for r in rows)
        per_crit = " / ".join(f"{r['gias'][i]['criterion']:.2e}" for r in rows)
        gias_rows.append([json.dumps(opts) if opts else "defaults", f"{gm('psnr'):.2f} ({per_seed})",
                          f"{gm('criterion'):.4f} ({per_crit})", f"{gm('seconds'):.0f}"])
    return "\n".join(lines + [h.markdown(["`gias` options (random latent start)", "PSNR", "criterion", "s / attack"],
                                         gias_rows)])


# ============================================================================ the command line
def _parser():
    p = h.parser(__doc__)
    sub = p.add_subparsers(dest="study", required=True)

    def study(name: str, run, help_: str, threads: int = 1, **flags):
        s = h.add_flags(sub.add_parser(name, help=help_, description=help_), threads=threads, json=None, **flags)
        s.set_defaults(run=run)
        return s

    s = study("grid", grid, "the self-tuning rules (matching, held-out, screen) vs the oracle on held-out cases",
              cases="all", batches="4,8", seeds=2, steps=300, render=None)
    s.add_argument("--tvs", default="0.02,0.2,0.5,1.0,2.0", help="the TV grid")
    s.set_defaults(render_with=lambda files: grid_table([r for f in files for r in h.read_rows(f)]))
    s = study("shadow", shadow, "ig-shadow on the grid study's cells (benchmarks/results/self_tuning.json)",
              cases="all", steps=300, render=None)
    s.add_argument("--aux", choices=("same", "cifar10"), default="same")
    s.add_argument("--shadow-fraction", type=float, default=1.0,
                   help="< 1: the shadow grid at this share of the budget; only the pick is run (seconds = pick)")
    s.add_argument("--extend", type=int, default=0,
                   help="ig-shadow's extend_edges (0: the fixed grid, as the first measurements; 2: the default)")
    s.add_argument("--lr-grid", default="0.1",
                   help="ig-shadow's lr_grid, comma-separated (0.1: ig's step size only, as the first measurements)")
    s.set_defaults(render_with=lambda files: shadow_table([h.read_rows(f) for f in files]))
    s = study("mnist", mnist, "the rules on the presets' own MNIST models", seeds=3, steps=400, render=None)
    s.set_defaults(render_with=lambda files: mnist_table([r for f in files for r in h.read_rows(f)]))
    s.add_argument("--cases", default="all", help=f"comma-separated indices (0-based) of {list(MNIST_CASES)}, or all")
    s = study("defended", defended, "ig-shadow calibrated on a defended vs a clean shadow update", seeds=3,
              steps=400, render=None)
    s.set_defaults(render_with=lambda files: defended_table([r for f in files for r in h.read_rows(f)]))
    s = study("peers", peers_study, "ig-shadow on the peer benchmark's cells, beside breaching", batches="1,4,8,16",
              seeds=3, steps=300, render=None)
    s.add_argument("--models", default="cnn")
    s.add_argument("--breaching-steps", type=int, default=None,
                   help="read breaching's committed run at this budget (default --steps; 300 with --steps 150: "
                        "fedsim at half breaching's budget)")
    s.set_defaults(render_with=lambda files: peers_table([r for f in files for r in h.read_rows(f)]))
    s = study("activation", activation, "ig's TV weight against the victim's activation, beside breaching",
              threads=2, batches="1,4,8", seeds=2, steps=300)
    s.add_argument("--models", default="lenet5:sigmoid,lenet5:tanh,lenet5:relu,convnet:relu,lenet5:silu")
    s.add_argument("--tvs", default="0.01,0.2,0.2d,2.0", help="TV weights; a trailing d: decayed with the step size")
    s = study("truth", truth, "where the ig objective leads from the true images; gias and the prior's capacity",
              seed_list=[0, 1, 2], steps=400)
    s.add_argument("--tv", type=float, nargs="*", default=[0.2, 2.0], help="ig's TV weights (none: gias only)")
    s.add_argument("--prior-shift", type=int, default=1, help="train_prior's shift_augment (0: the earlier prior)")
    s.add_argument("--prior-steps", type=int, default=6000, help="train_prior's steps (3000: the earlier prior)")
    s.add_argument("--prior-arch", default="conv", help="train_prior's decoder arch (mlp, conv)")
    s.add_argument("--prior-hidden", type=int, default=None, help="train_prior's hidden width (default per arch)")
    s.add_argument("--prior-path", type=Path, default=None,
                   help="keep the trained prior here (reused when its recorded settings match)")
    s.add_argument("--gias", nargs="+", default=["{}"],
                   help="gias option sets to compare, each a JSON object (e.g. '{\"restarts\": 16}')")
    s.add_argument("--model", default="convnet", help="zoo model of the victims (default: the frontier's ConvNet)")
    s.add_argument("--model-options", default=None,
                   help='its options as JSON (default for convnet: {"activation": "relu", "width": 8})')
    return p


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = h.parse(p, argv)
    args.parser, args.command_line = p, args.command
    if getattr(args, "render", None):
        print(args.render_with(args.render))
        return 0
    print(args.run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
