"""Self-tuned Inverting Gradients: the TV weight is chosen per update by a number the server can compute.

Inverting Gradients (Geiping et al., NeurIPS 2020) trades gradient matching against a total-variation prior whose
best weight depends on the model, the batch and the data: one fixed weight (``ig_tv_for``) trades small batches
for large ones. ``ig-auto`` runs ``ig`` once per weight of a grid and keeps the reconstruction whose own gradient
matches the shared one best: the engine's ``best_loss``, the cosine distance of the returned iterate's gradient to
the target with *no* regulariser term (``fedsim.attacks.inversion.core.BestTracker``). Nothing here reads ground truth;
``python -m benchmarks.tv_weight grid`` measures the pick against the grid's oracle (best PSNR) on held-out models and
images (docs/benchmarks/self_tuning.md).

Cost: one ``ig`` run per grid weight (5x ``ig`` by default). ``batched=True`` optimises the weights as the R
restarts of one engine call instead (one vmapped pass per step, the same initial point for every weight, each
restart with its own TV weight; ``restart_regularizers``), picked by the same rule; the returned iterate then
comes from the vmapped path, equal to separate ``ig`` runs up to float rounding, not bitwise
(for ig-shadow's grid, the same form, 1.3-1.6x faster than separate runs on CPU: docs/benchmarks/self_tuning.md;
``benchmarks/quality_per_second.py --auto`` measures it for ig-auto, not yet run). The engine's set-up (model copy, targets,
the prepared distance) is 1.3-1.5 ms a call (docs/benchmarks/quality_per_second.md), so separate runs lose
nothing to repeated set-up.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import torch

from fedsim.attacks.inversion.core import InversionTrace
from fedsim.attacks.inversion.methods import INVERSION_METHODS, inversion_record, invert
from fedsim.attacks.records import Need

#: TV weights tried per update (relative to the initial cosine distance, as ``ig``'s own weight)
TV_GRID: tuple[float, ...] = (0.02, 0.2, 0.5, 1.0, 2.0)


def ig_auto(*, model, gradients=None, labels=None, input_shape: Sequence[int], steps: int = 1000, mean=(0.0,),
            std=(1.0,), seed: int = 0, tv_grid: Sequence[float] = TV_GRID, bn_weight: float = 0.0,
            batched: bool = False, **options: Any) -> InversionTrace | torch.Tensor:
    """``ig`` at every weight of ``tv_grid``; the run with the smallest matching distance wins. With
    ``return_result=True`` the trace's ``options`` record ``tv_chosen`` and ``tv_criterion`` (weight -> distance).
    ``bn_weight`` > 0 adds the BatchNorm prior at that fixed weight to every run (with ``bn_statistics=``: the
    client's batch statistics, ``fedsim.attacks.inversion.bn_buffers``)."""
    if "regularizers" in options:
        raise ValueError("ig-auto chooses the TV weight itself; use 'ig' for a fixed regularizers= (or tv_grid=)")
    if not tv_grid:
        raise ValueError("ig-auto: tv_grid is empty")
    want_trace = bool(options.pop("return_result", False))
    bn = {"bn": float(bn_weight)} if bn_weight else {}
    if batched:
        return _batched(model=model, gradients=gradients, labels=labels, input_shape=input_shape, steps=steps,
                        mean=mean, std=std, seed=seed, tv_grid=tv_grid, bn=bn, want_trace=want_trace, **options)
    traces: dict[float, InversionTrace] = {}
    for tv in tv_grid:
        traces[float(tv)] = invert("ig", model=model, gradients=gradients, labels=labels, input_shape=input_shape,
                                   steps=steps, mean=mean, std=std, seed=seed, regularizers={"tv": float(tv), **bn},
                                   return_result=True, **options)
    chosen = min(traces, key=lambda tv: (traces[tv].best_loss, tv))
    best = traces[chosen]
    if not want_trace:
        return best.inputs
    seconds = sum(t.seconds for t in traces.values())
    return replace(best, method="ig-auto", seconds=seconds,
                   options={**best.options, "tv_chosen": chosen,
                            "tv_criterion": {tv: t.best_loss for tv, t in traces.items()}})


def tv_grid_as_restarts(grid: Sequence[float], bn: dict | None = None, **call: Any) -> InversionTrace:
    """One ``ig`` call whose R restarts are the R weights of ``grid`` (one shared initial point, each restart with
    its own TV weight, plus ``bn`` in every one); the trace's options hold ``restart_losses`` and ``restart_inputs``
    in grid order. Shared by ``ig-auto``'s ``batched=True`` and ``ig-shadow``'s shadow grid."""
    bn = dict(bn or {})
    return invert("ig", regularizers={"tv": float(grid[0]), **bn}, restarts=len(grid), shared_init=True,
                  restart_regularizers=[{"tv": float(tv), **bn} for tv in grid], return_result=True, **call)


def _batched(*, tv_grid: Sequence[float], bn: dict, want_trace: bool, **kwargs: Any) -> InversionTrace | torch.Tensor:
    """Every weight as one restart of a single ``ig`` call (shared initial point); the smallest matching loss wins."""
    if "restarts" in kwargs or "restart_regularizers" in kwargs:
        raise ValueError("ig-auto batched=True uses one restart per TV weight; restarts= is not available")
    grid = [float(tv) for tv in tv_grid]
    trace = tv_grid_as_restarts(grid, bn, **kwargs)
    losses = trace.options["restart_losses"]
    criterion = {tv: loss for tv, loss in zip(grid, losses)}
    chosen = min(criterion, key=lambda tv: (criterion[tv], tv))
    if not want_trace:
        return trace.inputs
    options = {k: v for k, v in trace.options.items()
               if k not in ("restart_regularizers", "restart_losses", "restart_inputs")}
    return replace(trace, method="ig-auto", options={**options, "regularizers": {"tv": chosen, **bn},
                                                     "tv_chosen": chosen, "tv_criterion": criterion,
                                                     "batched": True})


def tuning_signals(trace: Any, k: int) -> list[str]:
    """``ig-auto``'s trace, read live: the TV weight its gradient match chose."""
    options = getattr(trace, "options", {}) or {}
    if "tv_criterion" not in options:
        return []
    return [f"self-tuned: TV {options['tv_chosen']:g} by the gradient match"]


# self-tuned ig: the TV weight chosen per update by the gradient match, no ground truth
INVERSION_METHODS.register(inversion_record(
    "ig-auto", "Geiping et al. (NeurIPS 2020), the TV weight chosen per update by its own gradient match",
    "ig at every TV weight of tv_grid= (0.02, 0.2, 0.5, 1, 2); the reconstruction whose gradient matches the update "
    "best (cosine, no prior term: a number the server has) wins; 5x ig's cost",
    run=ig_auto, needs=(Need.CLIENT_SCHEDULE,), traces=True, trace_signals=tuning_signals))
