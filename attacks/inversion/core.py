"""The generic optimisation-based inversion engine: one loop, configured by an :class:`InversionSpec`.

A spec picks a target (``gradient``: one gradient or fake gradient; ``unrolled``: a simulated FedAvg update;
``multi``: several (weights, gradient) pairs of one client), a distance and layer weighting
(``objectives``), priors with weights (``priors``), the initialisation, optimiser, schedule and box constraint
(``optim``) and how labels are handled (``labels``). Methods in ``attacks.inversion.methods`` are specs with
the settings of their paper; every field can be overridden per call through ``invert(..., **options)``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

from attacks.inversion import fedavg as _fedavg
from attacks.inversion import labels as _labels
from attacks.inversion import objectives as _objectives
from attacks.inversion import optim as _optim
from attacks.inversion import priors as _priors

TARGETS = ("gradient", "unrolled", "multi")
LABEL_MODES = ("given", "joint", "idlg")


@dataclass(frozen=True)
class InversionSpec:
    """Settings of one optimisation-based inversion method (all overridable per call)."""

    distance: str = "l2"
    layer_weights: Any = None
    priors: Mapping[str, float] = field(default_factory=dict)
    optimizer: str = "adam"
    attack_lr: float = 0.1
    signed: bool = False
    schedule: str = "none"
    box: bool = False
    init: str = "randn"
    label_mode: str = "given"
    target: str = "gradient"
    restarts: int = 1
    line_search: str | None = None
    model_mode: str = "train"
    label_lr: float | None = None  # joint labels: lr of the dummy logits (default: attack_lr)
    normalize_match: bool = True  # divide the matching loss by its value at the initial point


SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(InversionSpec))

# options that are not spec fields
EXTRA_OPTIONS = {
    "batch_size": "number of dummy inputs when labels are not given (joint / iDLG labels); default 1",
    "num_classes": "classes of the dummy soft labels (joint); default: the classifier's output size",
    "lr": "the CLIENT's learning rate (FedAvg targets, fake gradients); not the attack's step size",
    "local_steps": "number of local SGD steps T of the client (FedAvg)",
    "local_batch_size": "client's local batch size B (unrolled FedAvg); default: the whole dummy batch",
    "weights_after": "client's weights after local training (dict by name or list); with lr and local_steps "
                     "gives the target (W0 - WT) / (T lr) when gradients is None",
    "updates": "multi-update: list of (weights_before, gradient) pairs of one client (same data)",
    "bn_statistics": "client-reported BN batch statistics [(mean, var)] per BN layer, for the 'bn' prior",
    "callback": "callable(step, x_model_space, match_loss) called every log_every steps and at the end",
    "log_every": "steps between callback calls / history entries; default 10",
    "return_result": "return an InversionResult (inputs, labels, history, timings) instead of a tensor",
}


@dataclass
class InversionResult:
    """What an inversion produced; ``inputs`` are in model space [K, C, H, W]."""

    method: str
    inputs: torch.Tensor
    labels: torch.Tensor | None
    best_loss: float
    history: list[tuple[int, float]]
    steps: int
    seconds: float
    seconds_per_step: float
    options: dict[str, Any]


def _stats_tensor(values, dtype) -> torch.Tensor:
    return torch.as_tensor(values, dtype=dtype).view(-1, 1, 1)


def validate_options(options: Mapping[str, Any]) -> None:
    valid = set(SPEC_FIELDS) | set(EXTRA_OPTIONS)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"invert: unknown options {unknown}; valid options: {sorted(valid)}")


def run_gradient_matching(name: str, spec: InversionSpec, *, model: nn.Module, gradients=None, labels=None,
                          input_shape: Sequence[int], steps: int = 1000, mean=(0.0,), std=(1.0,),
                          seed: int = 0, **options) -> InversionResult | torch.Tensor:
    validate_options(options)
    spec = dataclasses.replace(spec, **{k: v for k, v in options.items() if k in SPEC_FIELDS})
    extra = {k: v for k, v in options.items() if k not in SPEC_FIELDS}
    if spec.target not in TARGETS:
        raise ValueError(f"target: {spec.target!r} is not one of {TARGETS}")
    if spec.label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode: {spec.label_mode!r} is not one of {LABEL_MODES}")
    if spec.model_mode not in ("train", "eval"):
        raise ValueError(f"model_mode: {spec.model_mode!r} is not one of ('train', 'eval')")
    priors = _priors.check_priors(spec.priors)
    _objectives.get_distance(spec.distance)
    if steps < 1 or spec.restarts < 1:
        raise ValueError(f"need steps >= 1 and restarts >= 1, got {steps}, {spec.restarts}")

    t_start = time.perf_counter()
    model = copy.deepcopy(model)  # BN running stats would drift in train mode; never touch the caller's model
    model.train(spec.model_mode == "train")
    for p in model.parameters():
        p.requires_grad_(False)
    dtype = next(model.parameters()).dtype
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    mean_t, std_t = _stats_tensor(mean, dtype), _stats_tensor(std, dtype)
    input_shape = tuple(int(s) for s in input_shape)

    # ---- target(s) -------------------------------------------------------------------------------------
    if gradients is None and "weights_after" in extra:
        if "lr" not in extra or "local_steps" not in extra:
            raise ValueError("weights_after needs the client's lr and local_steps")
        gradients = _fedavg.target_from_weights(model, extra["weights_after"], extra["lr"], extra["local_steps"])
    pairs: list[tuple[dict[str, torch.Tensor], list[torch.Tensor]]] = []
    if gradients is not None:
        pairs.append((params, [g.detach().to(dtype) for g in _fedavg.as_param_list(model, gradients, "gradients")]))
    if spec.target == "multi":
        for i, (w, g) in enumerate(extra.get("updates", [])):
            w_list = _fedavg.as_param_list(model, w, f"updates[{i}].weights")
            g_list = _fedavg.as_param_list(model, g, f"updates[{i}].gradient")
            pairs.append(({n: t.detach().to(dtype).clone().requires_grad_(True) for n, t in zip(names, w_list)},
                          [t.detach().to(dtype) for t in g_list]))
    elif "updates" in extra:
        raise ValueError("option 'updates' needs target='multi' (method 'multi-update')")
    if not pairs:
        raise ValueError("no target: pass gradients=..., weights_after=... (with lr, local_steps) or updates=[...]")

    # ---- labels ----------------------------------------------------------------------------------------
    num_classes = int(extra.get("num_classes") or _labels.classifier_layer(model).out_features)
    if spec.label_mode == "given":
        if labels is None:
            raise ValueError("label_mode='given' needs labels=... (e.g. from attacks.labels.restore_labels); "
                             "or use label_mode='joint'")
        # unrolled FedAvg: batch composition matters, so labels keep the caller's order (k-th label = k-th
        # example the client visited); otherwise they are sorted and assigned by count (iLRG Sec. 4.4)
        hard = _labels.as_label_list(labels, sort=spec.target != "unrolled")
        k = len(hard)
    elif spec.label_mode == "idlg":
        k = int(extra.get("batch_size", 1))
        if k != 1:
            raise ValueError("iDLG label inference works for batch size 1 only")
        hard = _labels.idlg_label(model, pairs[0][1]) if labels is None else _labels.as_label_list(labels)
    else:
        k = int(extra.get("batch_size", len(labels) if labels is not None else 1))
        hard = None

    # ---- dummy variables -------------------------------------------------------------------------------
    gen = torch.Generator().manual_seed(int(seed))
    r = spec.restarts
    x = _optim.init_dummy(spec.init, (r, k) + input_shape, mean_t, std_t, gen).to(dtype).requires_grad_(True)
    variables = [{"params": [x], "lr": spec.attack_lr}]
    y_soft = None
    if spec.label_mode == "joint":
        y_soft = torch.randn((r, k, num_classes), generator=gen, dtype=dtype).requires_grad_(True)
        variables.append({"params": [y_soft], "lr": spec.label_lr or spec.attack_lr})
    optimizer = _optim.make_optimizer(spec.optimizer, variables if spec.optimizer != "lbfgs" else [x] + (
        [y_soft] if y_soft is not None else []), spec.attack_lr, line_search=spec.line_search)
    schedule = _optim.make_schedule(spec.schedule, optimizer, steps)
    lo, hi = _optim.box_bounds(mean_t, std_t)

    # ---- BN reference statistics -----------------------------------------------------------------------
    hook = None
    bn_reference: list = []
    if "bn" in priors:
        bn_reference = [(m.detach().to(dtype), v.detach().to(dtype)) for m, v in extra["bn_statistics"]] \
            if extra.get("bn_statistics") is not None else _priors.running_statistics(model)
        hook = _priors.BNStatisticsHook(model)

    local_steps = int(extra.get("local_steps", 1))
    local_bs = int(extra.get("local_batch_size", k))
    client_lr = float(extra.get("lr", 0.0))
    if spec.target == "unrolled" and client_lr <= 0:
        raise ValueError("target 'unrolled' (fedavg-unrolled) needs the client's lr=... and local_steps=...")
    weights = _objectives.layer_weights(spec.layer_weights, len(names))
    distance = _objectives.get_distance(spec.distance)

    def match_loss(xr: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        total = xr.new_zeros(())
        for w_params, target in pairs:
            if spec.target == "unrolled":
                dummy = _fedavg.simulate_local_training(model, w_params, buffers, xr, targets, local_steps,
                                                        local_bs, client_lr)
            else:
                logits = functional_call(model, {**w_params, **buffers}, (xr,))
                loss = _fedavg.step_loss(logits, targets)
                dummy = torch.autograd.grad(loss, [w_params[n] for n in names], create_graph=True)
            total = total + distance(list(dummy), target, weights)
        return total / len(pairs)

    best_loss = [math.inf] * r
    best_x = x.detach().clone()
    history: list[tuple[int, float]] = []
    last: dict[str, Any] = {}
    callback: Callable | None = extra.get("callback")
    log_every = int(extra.get("log_every", 10))

    def closure():
        optimizer.zero_grad()
        per_group = []
        bn_stats = []
        for g in range(r):
            targets = hard if y_soft is None else y_soft[g]
            per_group.append(match_loss(x[g], targets))
            if hook is not None:
                bn_stats.append(hook.pop()[:len(bn_reference)])
        match = torch.stack(per_group)
        if spec.normalize_match:
            # prior weights become relative to the initial matching loss (a constant factor per run), which
            # makes them portable across models whose gradient scales differ by orders of magnitude
            if "match0" not in last:
                last["match0"] = match.detach().clamp_min(1e-30)
            total = (match / last["match0"]).sum()
        else:
            total = match.sum()
        if priors:
            ctx = _priors.PriorContext(x=x, pixel=x * std_t + mean_t, bn_stats=bn_stats, bn_reference=bn_reference)
            total = total + _priors.prior_loss(priors, ctx)
        # divide by a constant (same minimiser): the value at the start of the current L-BFGS run. PyTorch's
        # L-BFGS skips curvature pairs with y.s <= 1e-10, so on a tiny objective it degrades to plain gradient
        # descent; the loop below restarts L-BFGS with a new scale whenever the objective fell 1000-fold.
        last["raw"] = total.detach().abs()
        if "scale" not in last:
            last["scale"] = last["raw"].clamp_min(1e-30)
        total = total / last["scale"]
        total.backward()
        if spec.signed:
            for v in (x, y_soft):
                if v is not None and v.grad is not None:
                    v.grad.sign_()
        values = match.detach()
        last["match"] = values
        for g in range(r):
            v = float(values[g])
            if math.isfinite(v) and v < best_loss[g]:
                best_loss[g] = v
                best_x[g] = x.detach()[g]
        return total

    step_times: list[float] = []

    def loop() -> int:
        done = 0
        for step in range(steps):
            t0 = time.perf_counter()
            loss = optimizer.step(closure)
            if schedule is not None:
                schedule.step()
            if spec.box:
                with torch.no_grad():
                    x.data = torch.max(torch.min(x.data, hi), lo)
            step_times.append(time.perf_counter() - t0)
            done = step + 1
            if not math.isfinite(float(loss.detach())):
                break
            if spec.optimizer == "lbfgs" and float(last["raw"]) < 1e-3 * float(last["scale"]):
                last["scale"] = last["raw"].clamp_min(1e-30)
                optimizer.state.clear()
            if step % log_every == 0 or step == steps - 1:
                current = float(last["match"].min())
                history.append((step, current))
                if callback is not None:
                    g_best = int(torch.tensor(best_loss).argmin())
                    callback(step, best_x[g_best].clone(), current)
        return done

    # subnormal floats (objective values near 1e-38 late in a run) slow CPU arithmetic by 10x or more;
    # flushing them is process-global, so it is switched back off (PyTorch's default) afterwards
    torch.set_flush_denormal(True)
    try:
        done = loop()
    finally:
        torch.set_flush_denormal(False)
        if hook is not None:
            hook.remove()

    # final evaluation at the last iterate (the closure saw only pre-step points)
    with torch.enable_grad():
        for g in range(r):
            targets = hard if y_soft is None else y_soft[g]
            v = float(match_loss(x.detach()[g].clone(), targets.detach()).detach())
            if math.isfinite(v) and v < best_loss[g]:
                best_loss[g] = v
                best_x[g] = x.detach()[g]
    g_best = int(torch.tensor(best_loss).argmin())
    out = best_x[g_best]
    if spec.box:
        out = torch.max(torch.min(out, hi), lo)
    labels_out = hard.clone() if hard is not None else y_soft.detach()[g_best].argmax(-1)
    seconds = time.perf_counter() - t_start
    median_step = float(torch.tensor(step_times).median()) if step_times else float("nan")
    if callback is not None and history and history[-1][0] != done - 1:
        callback(done - 1, out.clone(), best_loss[g_best])
    result = InversionResult(method=name, inputs=out.detach(), labels=labels_out, best_loss=best_loss[g_best],
                             history=history, steps=done, seconds=seconds, seconds_per_step=median_step,
                             options={**dataclasses.asdict(spec), **{k: v for k, v in extra.items()
                                                                     if k in ("lr", "local_steps",
                                                                              "local_batch_size", "batch_size")}})
    return result if extra.get("return_result") else result.inputs
