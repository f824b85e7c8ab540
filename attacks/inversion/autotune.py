"""Self-tuned Inverting Gradients: the TV weight is chosen per update by a number the server can compute.

Inverting Gradients (Geiping et al., NeurIPS 2020) trades gradient matching against a total-variation prior whose
best weight depends on the model, the batch and the data: one fixed weight (``ig_tv_for``) trades small batches
for large ones. ``ig-auto`` runs ``ig`` once per weight of a grid and keeps the reconstruction whose own gradient
matches the shared one best: the engine's ``best_loss``, the cosine distance of the returned iterate's gradient to
the target with *no* regulariser term (``fedsim.attacks.inversion.core.BestTracker``). Nothing here reads ground truth;
``benchmarks/self_tuning.py`` measures the pick against the grid's oracle (best PSNR) on held-out models and
images (docs/benchmarks/self_tuning.md).

Cost: one ``ig`` run per grid weight (5x ``ig`` by default).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import torch

from fedsim.attacks.inversion.core import InversionTrace

#: TV weights tried per update (relative to the initial cosine distance, as ``ig``'s own weight)
TV_GRID: tuple[float, ...] = (0.02, 0.2, 0.5, 1.0, 2.0)


def ig_auto(*, model, gradients=None, labels=None, input_shape: Sequence[int], steps: int = 1000, mean=(0.0,),
            std=(1.0,), seed: int = 0, tv_grid: Sequence[float] = TV_GRID, bn_weight: float = 0.0,
            **options: Any) -> InversionTrace | torch.Tensor:
    """``ig`` at every weight of ``tv_grid``; the run with the smallest matching distance wins. With
    ``return_result=True`` the trace's ``options`` record ``tv_chosen`` and ``tv_criterion`` (weight -> distance).
    ``bn_weight`` > 0 adds the BatchNorm prior at that fixed weight to every run (with ``bn_statistics=``: the
    client's batch statistics, ``fedsim.attacks.inversion.bn_buffers``)."""
    from fedsim.attacks.inversion import invert  # the registry module imports this one

    if "regularizers" in options:
        raise ValueError("ig-auto chooses the TV weight itself; use 'ig' for a fixed regularizers= (or tv_grid=)")
    if not tv_grid:
        raise ValueError("ig-auto: tv_grid is empty")
    want_trace = bool(options.pop("return_result", False))
    traces: dict[float, InversionTrace] = {}
    bn = {"bn": float(bn_weight)} if bn_weight else {}
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
