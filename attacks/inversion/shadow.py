"""Shadow-calibrated Inverting Gradients: the TV weight is chosen on an update the server simulates itself.

``ig-auto`` picks the TV weight by the reconstruction's own gradient match (``ig-shadow`` also picks the attack's step
size, below). Where a weaker prior lets the dummy
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
best weight. When the best weight is the grid's smallest (largest), the grid is widened past that edge
(``extend_edges``, twice by default: 0.02 -> 0.01, 0.004 -> 0.002, 0.0008) and the shadow scores the new weights
too. No client ground truth is read; the shadow truth is the server's own data. Cost: the grid at
``shadow_steps`` (default: the attack's budget; a quarter of it biases the pick to strong priors, measured in
docs/benchmarks/self_tuning.md) as one batched ``ig`` call per step size of ``lr_grid`` (three by default), one
more batched call of two weights per edge extension, plus the real run: 11-22x one ``ig`` run on the SmallCNN
peer cells (docs/benchmarks/peers.md (d)).

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
from fedsim.attacks.inversion.calibration import Calibration, CalibrationCache, calibration_key
from fedsim.attacks.inversion.core import InversionTrace
from fedsim.attacks.inversion.methods import INVERSION_METHODS, inversion_record, invert
from fedsim.attacks.records import Need
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
    g = torch.Generator().manual_seed(50_000 + int(seed))  # a CPU draw: the same batch on every device
    order = torch.randperm(len(x), generator=g).to(y.device)
    free = torch.ones(len(x), dtype=torch.bool, device=y.device)
    picked: list[int] = []
    wanted = [] if labels is None else [int(c) for c in labels.reshape(-1).tolist()]
    for c in wanted[:k]:
        hits = order[(y[order] == c) & free[order]]
        if len(hits):
            picked.append(int(hits[0]))
            free[hits[0]] = False
    rest = order[free[order]][: k - len(picked)]
    idx = torch.tensor(picked + rest.tolist(), dtype=torch.long, device=y.device)
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
    rec = to_pixels(x_hat, mean, std)
    truth = to_pixels(x.to(rec.device), mean, std)
    perm, _ = align(rec, truth)
    return float(psnr_matrix(rec[perm], truth).diagonal().mean())


#: the attack step sizes ``ig_shadow`` tries by default (``ig``'s own 0.1 first; docs/benchmarks/self_tuning.md, "Step size")
LR_GRID: tuple[float, ...] = (0.1, 0.3, 1.0)
#: edge extensions ``ig_shadow`` allows by default (docs/benchmarks/self_tuning.md, "Edge extension")
EXTEND_EDGES = 2
#: how an edge pick widens the grid: below its floor by these factors of the floor, above its top by these of the top
EDGE_FACTORS: tuple[tuple[float, ...], tuple[float, ...]] = ((0.5, 0.2), (2.0, 5.0))


def shadow_updates(*, model: nn.Module, aux: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor | None, k: int,
                   seed: int, shadows: int = 1, schedule: Mapping[str, Any] | None = None, defense: Any = None
                   ) -> list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], int]]:
    """(images, labels, simulated update, seed) of each of ``shadows`` shadow batches, defended by ``defense`` (a
    ``fedsim.attacks.defense_view.ShadowDefense``) when given: what :func:`choose_tv` attacks."""
    schedule = dict(schedule or {})
    sim = {key: schedule[key] for key in ("local_steps", "lr", "local_batch_size") if key in schedule}
    out = []
    for s in range(max(1, int(shadows))):
        xs, ys = shadow_batch(aux, labels, k, seed + 1000 * s)
        p = next(model.parameters())
        xs, ys = xs.to(p), ys.to(p.device)  # the public split's images, on the model's device and dtype
        target = simulate_update(model, xs, ys, **sim)
        if defense is not None:
            if "lr" not in sim:
                raise ValueError("ig-shadow: simulating the client's defense needs its lr= (the update's scale)")
            target = defense.on_fake_gradient(target, lr=sim["lr"], local_steps=int(sim.get("local_steps", 1)),
                                              seed=60_000 + seed + 1000 * s)
        out.append((xs, ys, target, seed + 1000 * s))
    return out


def choose_tv(*, model: nn.Module, aux: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor | None, k: int,
              input_shape: Sequence[int], steps: int, mean, std, seed: int, tv_grid: Sequence[float],
              shadows: int = 1, schedule: Mapping[str, Any] | None = None, batched: bool = True,
              extend_edges: int = 0, defense: Any = None, prepared: list | None = None, **options: Any
              ) -> tuple[float, dict[float, float]]:
    """(the weight with the best mean shadow PSNR, weight -> that PSNR) over ``shadows`` shadow batches.
    ``batched``: the grid weights as the restarts of one ``ig`` call (``restart_regularizers``, one vmapped pass per
    step from one shared initial point: 1.3-1.6x faster than separate runs on CPU, equal to them up to float
    rounding); ``False``: one ``ig`` run per weight. ``extend_edges`` = n: while the best weight is the smallest
    (largest) one tried, try ``EDGE_FACTORS`` times it below (above), at most n times: a pick on the grid's edge
    says the best weight may lie beyond it, and the shadow can tell (its truth is the server's own images). The
    extra weights start from the same initial point (``shared_init``), so every weight is scored alike.
    ``defense`` (a ``fedsim.attacks.defense_view.ShadowDefense``): the client's update defenses, applied to each
    shadow update with the server's own noise draws before the grid attacks it. ``prepared``: the
    :func:`shadow_updates` of an earlier call with the same model, split, seed and schedule (reused, not redrawn)."""
    schedule = dict(schedule or {})
    if prepared is None:
        prepared = shadow_updates(model=model, aux=aux, labels=labels, k=k, seed=seed, shadows=shadows,
                                  schedule=schedule, defense=defense)
    calls = [(xs, dict(model=model, gradients=target, labels=ys, input_shape=input_shape, steps=steps, mean=mean,
                       std=std, seed=seed_s, **schedule, **options)) for xs, ys, target, seed_s in prepared]
    scores: dict[float, list[float]] = {}

    def score(weights: list[float]) -> None:
        for xs, call in calls:
            if batched:  # the weights as the restarts of one vmapped call, each with its weight, one shared start
                recs = list(tv_grid_as_restarts(weights, **call).options["restart_inputs"])
            else:
                recs = [invert("ig", regularizers={"tv": tv}, **call).detach() for tv in weights]
            for tv, xh in zip(weights, recs):
                scores.setdefault(tv, []).append(aligned_psnr(xh, xs.to(xh), mean, std))

    def best() -> float:
        means = {tv: sum(v) / len(v) for tv, v in scores.items()}
        return max(means, key=lambda tv: (means[tv], -tv))

    score(list(dict.fromkeys(float(tv) for tv in tv_grid)))
    for _ in range(max(0, int(extend_edges))):
        chosen, lo, hi = best(), min(scores), max(scores)
        if chosen == lo and lo > 0 and len(scores) > 1:
            wider = [float(f"{lo * f:.6g}") for f in EDGE_FACTORS[0]]
        elif chosen == hi and len(scores) > 1:
            wider = [float(f"{hi * f:.6g}") for f in EDGE_FACTORS[1]]
        else:
            break
        score([tv for tv in wider if tv not in scores])
    mean_scores = {tv: sum(v) / len(v) for tv, v in sorted(scores.items())}
    return best(), mean_scores


def ig_shadow(*, model, gradients=None, labels=None, input_shape: Sequence[int], steps: int = 1000, mean=(0.0,),
              std=(1.0,), seed: int = 0, aux: tuple[torch.Tensor, torch.Tensor] | None = None,
              tv_grid: Sequence[float] = TV_GRID, shadow_steps: int | None = None, shadows: int = 1,
              batched: bool = True, extend_edges: int = EXTEND_EDGES, shadow_defense: Any = None,
              lr_grid: Sequence[float] = LR_GRID, calibration_cache: CalibrationCache | None = None,
              **options: Any) -> InversionTrace | torch.Tensor:
    """``ig`` on the real update at the TV weight that reconstructs a simulated shadow update best
    (:func:`choose_tv`). ``aux``: the public split in model space (images [N, C, H, W], labels [N]); the client's
    schedule comes as ``lr=``, ``local_steps=``, ``local_batch_size=``. ``shadow_defense``
    (``fedsim.attacks.defense_view.ShadowDefense``, the pipeline's "defense settings"): the shadow update is defended
    as the client's was, and a sparsified update is matched on its sent coordinates only (``distance=
    "cosine-masked"``, ig-masked's, in the shadow and the real run) unless ``distance=`` is given. With
    ``return_result=True`` the trace's ``options`` record ``tv_chosen`` and ``tv_shadow_psnr`` (weight -> mean PSNR
    on the shadow batches), and ``shadow_defense`` (in words) when one was simulated.

    ``lr_grid``: the attack's step sizes (``attack_lr``) tried on the shadow, each with the whole TV grid (and its
    edge extension); the real run uses the best pair. A given ``attack_lr=`` fixes the step size (grid of one).
    The trace then records ``attack_lr_chosen`` and ``lr_shadow_psnr`` (step size -> best shadow PSNR with it).

    ``calibration_cache`` (``fedsim.attacks.inversion.calibration.CalibrationCache``, the attack runner's): the
    calibration is looked up by (model state, K, schedule, defense, settings) and computed only on a miss, on a
    shadow batch drawn without the restored labels (a function of the key alone, so every attacked update of a
    round shares it); the trace then records ``calibration_reused``."""
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
    if shadow_defense is not None and shadow_defense.sparsifies and "distance" not in options:
        options["distance"] = "cosine-masked"  # ig-masked's distance: only the coordinates the client sent
    shared = {key: v for key, v in options.items() if key not in CLIENT_ONLY and key != "num_samples"}
    step_sizes = [float(options["attack_lr"])] if "attack_lr" in options else [float(a) for a in lr_grid]
    if not step_sizes:
        raise ValueError("ig-shadow: lr_grid is empty")
    shared.pop("attack_lr", None)

    def calibrate(shadow_labels: torch.Tensor | None) -> Calibration:
        per_lr: dict[float, tuple[float, dict[float, float]]] = {}
        prepared = shadow_updates(model=model, aux=aux, labels=shadow_labels, k=k, seed=seed, shadows=shadows,
                                  schedule=schedule, defense=shadow_defense)  # one set for every step size
        for attack_lr in dict.fromkeys(step_sizes):
            per_lr[attack_lr] = choose_tv(model=model, aux=aux, labels=shadow_labels, k=k, input_shape=input_shape,
                                          steps=int(shadow_steps or steps), mean=mean, std=std, seed=seed,
                                          tv_grid=tv_grid, shadows=shadows, schedule=schedule, batched=batched,
                                          extend_edges=extend_edges, prepared=prepared, attack_lr=attack_lr,
                                          **shared)
        best_of = {a: tv_psnr[tv] for a, (tv, tv_psnr) in per_lr.items()}
        chosen_lr = max(best_of, key=lambda a: (best_of[a], -step_sizes.index(a)))  # a tie keeps the earlier one
        return Calibration(tv=per_lr[chosen_lr][0], attack_lr=chosen_lr, tv_psnr=per_lr[chosen_lr][1],
                           lr_psnr=best_of)

    reused = None
    key = None
    if calibration_cache is not None:
        try:
            key = calibration_key(model, k=k, input_shape=tuple(input_shape), steps=int(shadow_steps or steps),
                                  mean=tuple(mean), std=tuple(std), seed=seed, aux=aux, tv_grid=tuple(tv_grid),
                                  lr_grid=tuple(step_sizes), shadows=shadows, batched=batched,
                                  extend_edges=extend_edges, schedule=schedule, defense=shadow_defense,
                                  shared=shared)
        except TypeError:  # a setting the key cannot describe: calibrate this update on its own
            key = None
    if key is None:
        cal = calibrate(labels)
    else:
        cal, reused = calibration_cache.get_or_compute(key, lambda: calibrate(None))
    chosen, psnrs, chosen_lr, best_of = cal.tv, dict(cal.tv_psnr), cal.attack_lr, dict(cal.lr_psnr)
    options["attack_lr"] = chosen_lr
    trace = invert("ig", model=model, gradients=gradients, labels=labels, input_shape=input_shape, steps=steps,
                   mean=mean, std=std, seed=seed, regularizers={"tv": chosen}, return_result=True, **schedule,
                   **options)
    if not want_trace:
        return trace.inputs
    return replace(trace, method="ig-shadow",
                   options={**trace.options, "tv_chosen": chosen, "tv_shadow_psnr": psnrs,
                            "attack_lr_chosen": chosen_lr, "lr_shadow_psnr": best_of,
                            **({} if reused is None else {"calibration_reused": reused}),
                            **({"shadow_defense": shadow_defense.describe(),
                                "distance": options.get("distance", "cosine")} if shadow_defense is not None else {})})


def calibration_signals(trace: Any, k: int) -> list[str]:
    """``ig-shadow``'s trace, read live: the TV weight and step size its shadow calibration chose."""
    options = getattr(trace, "options", {}) or {}
    if "tv_shadow_psnr" not in options:
        return []
    defended = " (defended as the client's)" if "shadow_defense" in options else ""
    masked = "; matched on the sent coordinates only" if options.get("distance") == "cosine-masked" else ""
    step = f", step size {options['attack_lr_chosen']:g}" if "attack_lr_chosen" in options else ""
    shared = {True: " (the calibration of this model and schedule, reused)",
              False: " (calibrated here for this model and schedule)"}.get(options.get("calibration_reused"), "")
    return [f"shadow calibration: TV {options['tv_chosen']:g}{step} reconstructed a simulated update{defended} of "
            f"{k} public images best{masked}{shared}"]


# shadow-calibrated ig: the TV weight chosen on an update the server simulates from its public split at the
# client's schedule (the shadow truth is the server's own data, never the client's)
INVERSION_METHODS.register(inversion_record(
    "ig-shadow", "Geiping et al. (NeurIPS 2020), the TV weight and step size calibrated on a shadow update "
    "(shadow training: Shokri et al., IEEE S&P 2017)",
    "simulate the client's update on K public images (its lr, local steps, batch size), run ig at every step size "
    "of lr_grid= (0.1, 0.3, 1) and TV weight of tv_grid= on it (widened past an edge the shadow picks, "
    "extend_edges=; the client's update defenses applied to the shadow update, a sparsified one matched on its "
    "sent coordinates), attack the real update with the pair that reconstructed the shadow batch best (PSNR "
    "against the server's own images); 11-22x one ig run on small models (CPU)",
    run=ig_shadow,
    needs=(Need.PUBLIC_SPLIT, Need.CLIENT_SCHEDULE, Need.DEFENSE_SETTINGS, Need.CALIBRATION_CACHE), traces=True,
    trace_signals=calibration_signals))
