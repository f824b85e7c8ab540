"""Shadow-calibrated Inverting Gradients: the TV weight is chosen on an update the server simulates itself.

``ig-auto`` picks the TV weight by the reconstruction's own gradient match. Where a weaker prior lets the dummy
batch match the update *better* with *worse* images (FedAvg fake gradients, some ReLU CNNs on MNIST:
docs/benchmarks/self_tuning.md, docs/benchmarks/defenses.md) that rule follows the match the wrong way. The shadow
rule asks the question the attacker actually cares about, "which weight reconstructs images best on this model,
at this batch size and schedule?", on data whose answer it knows: its own.

Shadow training is the attacker's standard calibration when it holds data from the task's distribution (shadow
models, Shokri et al., "Membership Inference Attacks Against Machine Learning Models", IEEE S&P 2017; RLU's
auxiliary-data simulation, Chen & Vikalo, ICML 2024). Here: the server holds the global model W0 it sent, the
client's schedule (lr, local steps T, local batch size B: it configured them) and its public labelled split. It
draws a shadow batch of K public images (the restored labels' classes where the split has them), computes the
update that batch would have produced (the batch-mean gradient for FedSGD; T SGD steps and the fake gradient
(W0 - WT) / (T lr) for FedAvg, as ``fedsim.core.training`` trains), runs ``ig`` at every weight of the grid on it,
scores each reconstruction against the shadow images (aligned PSNR) and attacks the real update once, with the
best weight. No client ground truth is read; the shadow truth is the server's own data. Cost: the grid at
``shadow_steps`` (default: the attack's budget; a quarter of it biases the pick to strong priors, measured in
docs/benchmarks/self_tuning.md) as one batched ``ig`` call, plus the real run.

The engine is the project's own (``fedsim.attacks.inversion.core``); the client's schedule is replayed by
``fedsim.attacks.local_replay.LocalReplay``, which the reported-loss check shares (breaching has no shadow
calibration to reuse).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from fedsim.attacks.inversion.autotune import TV_GRID, tv_grid_as_restarts
from fedsim.attacks.inversion.core import InversionTrace
from fedsim.attacks.local_replay import LocalReplay
from fedsim.core.errors import AttackNotApplicable
from fedsim.core.metrics.images import align, psnr_matrix, to_pixels

#: options of the real run that describe the client's data, not the attack: never given to the shadow runs
CLIENT_ONLY = ("bn_statistics", "callback", "log_every", "return_result", "weights_after", "updates")


def shadow_batch(aux: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor | None, k: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """K public images: for each restored label a public image of that class where the split has one left
    (drawn without replacement, seeded), the rest drawn at random with their own labels."""
    x, y = aux
    if len(x) < k:
        raise AttackNotApplicable(f"ig-shadow needs {k} public images, the public split has {len(x)}")
    g = torch.Generator().manual_seed(50_000 + int(seed))
    order = torch.randperm(len(x), generator=g)
    free = torch.ones(len(x), dtype=torch.bool)
    picked: list[int] = []
    wanted = [] if labels is None else [int(c) for c in labels.reshape(-1).tolist()]
    for c in wanted[:k]:
        hits = order[(y[order] == c) & free[order]]
        if len(hits):
            picked.append(int(hits[0]))
            free[hits[0]] = False
    rest = order[free[order]][: k - len(picked)]
    idx = torch.tensor(picked + rest.tolist(), dtype=torch.long)
    return x[idx], y[idx].long()


def simulate_update(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, local_steps: int = 1,
                    lr: float | None = None, local_batch_size: int | None = None) -> list[torch.Tensor]:
    """The update (x, y) would have produced, in the form the server attacks, aligned with
    ``list(model.parameters())``: the batch-mean cross-entropy gradient at W0 (FedSGD, ``local_steps`` 1), else
    the fake gradient (W0 - WT) / (T lr) of T SGD steps over batches of ``local_batch_size`` in order, cycling.
    ``model`` is not changed; train-mode BatchNorm uses batch statistics as the client's training did."""
    replay = LocalReplay(model, x, y, local_steps=local_steps, lr=lr, local_batch_size=local_batch_size,
                         what="ig-shadow: a FedAvg shadow update")
    if replay.steps == 1:
        g = replay.grad(replay.w0, 0)
        return [g[n] for n in replay.names]
    params = dict(replay.w0)
    for t in range(replay.steps):
        params = replay.step(params, replay.grad(params, t))
    return [(replay.w0[n] - params[n]) / (replay.steps * lr) for n in replay.names]


def aligned_psnr(x_hat: torch.Tensor, x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> float:
    """Mean PSNR after the optimal one-to-one assignment (``fedsim.core.metrics.images.align``: the shadow batch's
    order is lost as the client's is)."""
    rec, truth = to_pixels(x_hat, mean, std), to_pixels(x, mean, std)
    perm, _ = align(rec, truth)
    return float(psnr_matrix(rec[perm], truth).diagonal().mean())


def choose_tv(*, model: nn.Module, aux: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor | None, k: int,
              input_shape: Sequence[int], steps: int, mean, std, seed: int, tv_grid: Sequence[float],
              shadows: int = 1, schedule: Mapping[str, Any] | None = None, batched: bool = True, **options: Any
              ) -> tuple[float, dict[float, float]]:
    """(the weight with the best mean shadow PSNR, weight -> that PSNR) over ``shadows`` shadow batches.
    ``batched``: the grid weights as the restarts of one ``ig`` call (``restart_regularizers``, one vmapped pass per
    step from one shared initial point: 1.3-1.6x faster than separate runs on CPU, equal to them up to float
    rounding); ``False``: one ``ig`` run per weight."""
    from fedsim.attacks.inversion import invert  # the registry module imports this one

    schedule = dict(schedule or {})
    sim = {key: schedule[key] for key in ("local_steps", "lr", "local_batch_size") if key in schedule}
    scores: dict[float, list[float]] = {float(tv): [] for tv in tv_grid}
    grid = list(scores)
    for s in range(max(1, int(shadows))):
        xs, ys = shadow_batch(aux, labels, k, seed + 1000 * s)
        target = simulate_update(model, xs, ys, **sim)
        call = dict(model=model, gradients=target, labels=ys, input_shape=input_shape, steps=steps, mean=mean,
                    std=std, seed=seed + 1000 * s, **schedule, **options)
        if batched:  # the grid as the restarts of one vmapped call, each with its weight, one shared start
            recs = list(tv_grid_as_restarts(grid, **call).options["restart_inputs"])
        else:
            recs = [invert("ig", regularizers={"tv": tv}, **call).detach() for tv in grid]
        for tv, xh in zip(grid, recs):
            scores[tv].append(aligned_psnr(xh, xs.to(xh), mean, std))
    mean_scores = {tv: sum(v) / len(v) for tv, v in scores.items()}
    chosen = max(mean_scores, key=lambda tv: (mean_scores[tv], -tv))
    return chosen, mean_scores


def ig_shadow(*, model, gradients=None, labels=None, input_shape: Sequence[int], steps: int = 1000, mean=(0.0,),
              std=(1.0,), seed: int = 0, aux: tuple[torch.Tensor, torch.Tensor] | None = None,
              tv_grid: Sequence[float] = TV_GRID, shadow_steps: int | None = None, shadows: int = 1,
              batched: bool = True, **options: Any) -> InversionTrace | torch.Tensor:
    """``ig`` on the real update at the TV weight that reconstructs a simulated shadow update best
    (:func:`choose_tv`). ``aux``: the public split in model space (images [N, C, H, W], labels [N]); the client's
    schedule comes as ``lr=``, ``local_steps=``, ``local_batch_size=``. With ``return_result=True`` the trace's
    ``options`` record ``tv_chosen`` and ``tv_shadow_psnr`` (weight -> mean PSNR on the shadow batches)."""
    from fedsim.attacks.inversion import invert

    if "regularizers" in options:
        raise ValueError("ig-shadow chooses the TV weight itself; use 'ig' for a fixed regularizers=")
    if not tv_grid:
        raise ValueError("ig-shadow: tv_grid is empty")
    if aux is None:
        raise AttackNotApplicable("ig-shadow needs the server's public split (aux=) to simulate a shadow update")
    want_trace = bool(options.pop("return_result", False))
    if labels is None:
        k = int(options.get("num_samples", 0))
    else:
        labels = getattr(labels, "labels", labels)
        k = len(labels)
    if k < 1:
        raise ValueError("ig-shadow needs labels= (or num_samples=) for the size of the shadow batch")
    schedule = {key: options.pop(key) for key in ("local_steps", "lr", "local_batch_size") if key in options}
    shared = {key: v for key, v in options.items() if key not in CLIENT_ONLY and key != "num_samples"}
    chosen, psnrs = choose_tv(model=model, aux=aux, labels=labels, k=k, input_shape=input_shape,
                              steps=int(shadow_steps or steps), mean=mean, std=std, seed=seed, tv_grid=tv_grid,
                              shadows=shadows, schedule=schedule, batched=batched, **shared)
    trace = invert("ig", model=model, gradients=gradients, labels=labels, input_shape=input_shape, steps=steps,
                   mean=mean, std=std, seed=seed, regularizers={"tv": chosen}, return_result=True, **schedule,
                   **options)
    if not want_trace:
        return trace.inputs
    return replace(trace, method="ig-shadow",
                   options={**trace.options, "tv_chosen": chosen, "tv_shadow_psnr": psnrs})
