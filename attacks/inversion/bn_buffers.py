"""BatchNorm batch statistics from the buffers a client sends back, and the BN prior they feed.

A client training a BatchNorm model in train mode updates every layer's running mean and variance with the
statistics of its own batches; the server receives the buffers after the round and knows the ones it sent,
so it can solve PyTorch's update rule for the client's batch statistics
(:func:`fedsim.attacks.inversion.regularizers.bn_statistics_from_buffers`): exact for one FedSGD step, for T
FedAvg steps a known mix that is solved under the assumption of equal per-step statistics (exact in the mean
for ``momentum=None``, the cumulative average). These statistics are the reference of the DeepInversion /
GradInversion BN prior (Yin et al., CVPR 2020 / 2021) with the *client's* batch instead of the stale running
statistics of earlier rounds.

The prior's weight is chosen per update by the engine's own matching loss (the gradient-cosine distance of the
best iterate, no prior term; the number ``ig-auto`` ranks by, ``fedsim.attacks.inversion.autotune``): short
probe runs at each weight of :data:`BN_GRID`, the strongest weight whose match is within :data:`BN_TOLERANCE`
of the best (:func:`choose_bn_weight`), then the full run at that weight; no prior when the probes fitted too
little to rank the weights (:data:`BN_MIN_FIT`). Nothing here reads ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from fedsim.attacks.inversion.regularizers import bn_statistics_from_buffers
from fedsim.core.errors import AttackNotApplicable

#: BN prior weights tried per update (relative to the initial matching loss, as every engine regulariser)
BN_GRID: tuple[float, ...] = (0.01, 0.1, 1.0)
#: probe runs take this fraction of the full run's steps (at least ``MIN_PROBE_STEPS``)
PROBE_FRACTION = 0.25
MIN_PROBE_STEPS = 10
#: relative slack in the probe matching loss within which the strongest prior is preferred (choose_bn_weight)
BN_TOLERANCE = 0.25
#: the best probe must end at most this fraction of its initial matching loss for the probes to rank the weights
BN_MIN_FIT = 0.5


@dataclass(frozen=True)
class BufferStatistics:
    """The client's BN batch statistics (one (mean, biased var) per BN layer, module order) and how they were
    derived (``detail``: words for an ``InversionResult.signals`` entry)."""

    stats: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    steps: int
    momentum: float | None
    detail: str


def _bn_modules(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def per_channel_counts(model: nn.Module, input_shape: Sequence[int], batch_size: int) -> list[int]:
    """Values each BN layer averages per channel for a batch of ``batch_size``: B times its input's spatial size
    (one forward of a zero image in eval mode, which leaves every buffer as it was; the modes are restored after,
    so the caller's model is not changed, and no copy of it is made)."""
    modes = [(m, m.training) for m in model.modules()]
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: sizes.append(int(inp[0][0, 0].numel())))
             for _, m in _bn_modules(model)]
    try:
        p = next(model.parameters())
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=p.dtype, device=p.device))
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes:
            m.training = training
    return [batch_size * s for s in sizes]


def statistics_from_update(model: nn.Module, buffers_before: Mapping[str, torch.Tensor],
                           buffers_after: Mapping[str, torch.Tensor], local_steps: int, batch_size: int,
                           input_shape: Sequence[int]) -> BufferStatistics | None:
    """The client's batch statistics, or ``None`` when there is nothing to read (no BatchNorm layer, one in eval
    mode, or no buffers sent). ``AttackNotApplicable`` (with the reason) when buffers came but cannot be solved:
    a layer without running statistics, running stats that did not move, or the cumulative average
    (``momentum=None``) without ``num_batches_tracked``. T is read from ``num_batches_tracked`` when it was
    sent (the BN forward passes the client really ran), else ``local_steps``."""
    layers = _bn_modules(model)
    if not layers or not all(m.training for _, m in layers) or not buffers_before or not buffers_after:
        return None
    keys = [(f"{n}.running_mean" if n else "running_mean", f"{n}.running_var" if n else "running_var",
             f"{n}.num_batches_tracked" if n else "num_batches_tracked") for n, _ in layers]
    if any(k[0] not in buffers_before or k[0] not in buffers_after for k in keys):
        raise AttackNotApplicable("bn-buffers: a BatchNorm layer sent no running statistics "
                                  "(track_running_stats=False)")
    momenta = {m.momentum for _, m in layers}
    if len(momenta) != 1:
        raise AttackNotApplicable(f"bn-buffers: BatchNorm layers with different momenta {sorted(map(str, momenta))}")
    momentum = momenta.pop()
    tracked = keys[0][2]
    steps, tracked_before = int(local_steps), None
    if tracked in buffers_before and tracked in buffers_after:
        tracked_before = int(buffers_before[tracked])
        steps = int(buffers_after[tracked]) - tracked_before
        if steps < 1:
            raise AttackNotApplicable("bn-buffers: num_batches_tracked did not grow (the client froze BatchNorm)")
    elif momentum is None:
        raise AttackNotApplicable("bn-buffers: momentum=None (cumulative average) needs num_batches_tracked, "
                                  "which the update lacks")
    p = next(model.parameters())
    cast = dict(dtype=p.dtype, device=p.device)
    before = [(buffers_before[m].to(**cast), buffers_before[v].to(**cast)) for m, v, _ in keys]
    after = [(buffers_after[m].to(**cast), buffers_after[v].to(**cast)) for m, v, _ in keys]
    if all(torch.equal(b[0], a[0]) for b, a in zip(before, after)):
        raise AttackNotApplicable("bn-buffers: the running statistics did not change (BatchNorm not trained)")
    counts = per_channel_counts(model, input_shape, batch_size)
    stats = bn_statistics_from_buffers(before, after, momentum, counts, steps, tracked_before)
    if steps == 1:
        detail = "one step: exact batch statistics"
    elif momentum is None:
        detail = f"cumulative average over T={steps} steps: the mean of the per-step statistics"
    else:
        detail = f"FedAvg mix of T={steps} steps solved assuming equal per-step statistics"
    return BufferStatistics(tuple(stats), steps, momentum, detail)


@dataclass(frozen=True)
class WeightChoice:
    """What the probe runs said: the chosen weight (``None``: the probes did not fit the target well enough to
    rank the weights, so no prior is added), the probe matching loss per weight, and the best probe's fit (its
    final matching loss over its initial one; ``nan`` when the trace has no history)."""

    weight: float | None
    losses: Mapping[float, float]
    fit: float


def choose_bn_weight(run: Callable[[float, int], Any], steps: int, grid: Sequence[float] = BN_GRID,
                     tolerance: float = BN_TOLERANCE, min_fit: float = BN_MIN_FIT) -> WeightChoice:
    """The largest grid weight whose probe run (``run(weight, probe_steps)`` -> an ``InversionTrace``) matches the
    target within ``tolerance`` (relative) of the best probe (``best_loss``: the matching distance without the
    prior term); no weight when even the best probe kept more than ``min_fit`` of its initial matching loss.

    A prior always costs some gradient match, so the plain minimum (``tolerance=0``, ``ig-auto``'s rule) leans to
    the weakest prior; the strongest prior that costs the fit little is the one-standard-error rule of model
    selection (Hastie, Tibshirani, Friedman, *Elements of Statistical Learning*, 2009, Sec. 7.10) with a relative
    tolerance for the standard error. Probes that barely moved from their start (a large model, few steps) rank
    the weights by noise, hence ``min_fit``. docs/benchmarks/bn_buffers.md measures the rule against the grid's
    oracle."""
    if not grid:
        raise ValueError("bn weight grid is empty")
    probe_steps = max(MIN_PROBE_STEPS, int(steps * PROBE_FRACTION))
    traces = {float(w): run(float(w), probe_steps) for w in grid}
    losses = {w: float(t.best_loss) for w, t in traces.items()}
    finite = {w: v for w, v in losses.items() if math.isfinite(v)}
    if not finite:
        return WeightChoice(None, losses, math.nan)
    best_w = min(finite, key=lambda w: (finite[w], w))
    history = getattr(traces[best_w], "history", None)
    fit = finite[best_w] / max(float(history[0][1]), 1e-30) if history else math.nan
    if fit > min_fit:
        return WeightChoice(None, losses, fit)
    best = finite[best_w]
    return WeightChoice(max(w for w, v in finite.items() if v <= (1.0 + tolerance) * best), losses, fit)


def _engine_options(base_regularizers: Mapping[str, float], decay: bool, options: Mapping[str, Any],
                    stats: Sequence, weight: float) -> dict[str, Any]:
    regs = {**base_regularizers, "bn": float(weight)}
    return {**options, "regularizers": regs, "regularizer_decay": options.get("regularizer_decay", decay),
            "bn_statistics": list(stats)}


@dataclass(frozen=True)
class BnPrior:
    """The inversion options with the BN prior added, its weight (0: the probes could not rank the weights and
    the options are unchanged), the probe matching losses (weight -> loss; empty when the method's own weight was
    kept) and a line saying how the weight was set."""

    options: dict[str, Any]
    weight: float
    losses: Mapping[float, float]
    line: str
    fit: float = math.nan  # the best probe's final / initial matching loss (WeightChoice.fit)


def auto_bn_options(method: str, model: nn.Module, call: Mapping[str, Any], options: Mapping[str, Any],
                    buffers: BufferStatistics, grid: Sequence[float] = BN_GRID) -> BnPrior | None:
    """``options`` with the BN prior on the client's statistics added (a :class:`BnPrior`);
    ``None`` when ``method`` takes no prior this way (not an optimisation method, a target the prior is not
    available with (unrolled, clipped), eval-mode BatchNorm, or the caller fixed ``regularizers=`` /
    ``bn_statistics=`` itself). ``call``: the other arguments of ``invert`` (model, gradients, labels, steps, ...).
    A method whose own spec has a BN prior (``gradinversion``) keeps its weight and gets the statistics; others
    get the weight of :func:`choose_bn_weight` (``ig-auto``: probed with ``ig`` at its default TV, then every
    TV-grid run carries that weight)."""
    from fedsim.attacks.inversion import INVERSION_METHODS, invert
    from fedsim.attacks.inversion.methods import EngineRun

    if {"regularizers", "priors", "bn_statistics", "bn_weight"} & set(options):
        return None
    probe_method, run = method, INVERSION_METHODS[method].run
    if method == "ig-auto":
        probe_method, run = "ig", INVERSION_METHODS["ig"].run
    if not isinstance(run, EngineRun):
        return None
    base = run.spec_for(model, dict(options))
    target, mode = options.get("target", base.target), options.get("model_mode", base.model_mode)
    if target in ("unrolled", "clipped") or mode == "eval":
        return None
    stats = buffers.stats
    if method != "ig-auto" and "bn" in base.regularizers:
        own = float(base.regularizers["bn"])
        return BnPrior({**options, "bn_statistics": list(stats)}, own, {},
                       f"bn-buffers: {buffers.detail}; prior weight {own:g} ({method}'s own)")
    probe_options = {k: v for k, v in options.items() if k != "tv_grid"}

    def probe(weight: float, steps: int):
        return invert(probe_method, **{**call, "steps": steps}, return_result=True,
                      **_engine_options(base.regularizers, base.regularizer_decay, probe_options, stats, weight))

    choice = choose_bn_weight(probe, int(call["steps"]), grid)
    probes = ", ".join(f"{w:g}: {v:.4g}" for w, v in choice.losses.items())
    if choice.weight is None:
        return BnPrior(dict(options), 0.0, choice.losses,
                       f"bn-buffers read, prior not added: the best probe kept {choice.fit:.2f} of its initial "
                       f"gradient match (> {BN_MIN_FIT:g}), too little fit to rank the weights ({probes})", choice.fit)
    weight = choice.weight
    line = (f"bn-buffers: {buffers.detail}; prior weight {weight:g}, the strongest whose probe gradient match is "
            f"within {BN_TOLERANCE:.0%} of the best ({probes})")
    if method == "ig-auto":
        return BnPrior({**options, "bn_weight": weight, "bn_statistics": list(stats)}, weight, choice.losses, line,
                       choice.fit)
    return BnPrior(_engine_options(base.regularizers, base.regularizer_decay, options, stats, weight), weight,
                   choice.losses, line, choice.fit)
