"""The generic optimisation-based inversion engine: one loop, configured by an :class:`InversionSpec`.

A spec picks a target (``gradient``: one gradient or fake gradient; ``unrolled``: a simulated FedAvg update;
``multi``: several (weights, gradient) pairs of one client), a distance and layer weighting
(``objectives``), image regularisers with weights (``regularizers``), the initialisation, optimiser, schedule
and box constraint (``optim``) and how labels are handled (``labels``). Methods in
``fedsim.attacks.inversion.methods`` are specs with the settings of their paper; every field can be overridden per
call through ``invert(..., **options)``.

The run is a fixed sequence of named stages (the way Opacus' optimizer runs clip -> noise -> scale):

1. **prepare** (``problem.build_problem``): private model copy, targets, labels, on the model's device/dtype;
2. **initialise** (:func:`init_variables`): dummy batch [R, K, C, H, W] (and soft labels), optimiser, schedule;
3. per step: **evaluate** (:class:`Objective`: matching loss of all R restarts in one vmapped pass +
   regularisers) -> **backward** (w.r.t. the dummy variables only) -> **precondition** (sign of the gradient)
   -> **step** -> **schedule** -> **project** (box) -> **track** (:class:`BestTracker`, best iterate per
   restart);
4. **finalise**: score the last iterate, pick the best restart, build the :class:`InversionTrace`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from fedsim.attacks.inversion import objectives as _objectives
from fedsim.attacks.inversion import optim as _optim
from fedsim.attacks.inversion import regularizers as _regularizers
from fedsim.attacks.inversion.early_stop import Plateau, as_early_stop
from fedsim.attacks.inversion.matching import GradientMatcher
from fedsim.attacks.inversion.problem import Problem, build_problem

TARGETS = ("gradient", "unrolled", "multi", "clipped")
LABEL_MODES = ("given", "joint", "idlg")


@dataclass(frozen=True)
class InversionSpec:
    """Settings of one optimisation-based inversion method (all overridable per call)."""

    distance: str = "l2"
    layer_weights: Any = None
    regularizers: Mapping[str, float] = field(default_factory=dict)
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
    batch_restarts: bool = True  # evaluate the R restarts in one torch.func.vmap call (False: a Python loop)
    regularizer_decay: bool = False  # scale the regularisers with the step-size schedule (lr / attack_lr)


SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(InversionSpec))
ALIASES = {"priors": "regularizers"}  # the option's old name, still accepted

# options that are not spec fields
EXTRA_OPTIONS = {
    "num_samples": "K, the number of dummy inputs when labels are not given (joint / iDLG labels); default 1",
    "num_classes": "classes of the dummy soft labels (joint); default: the classifier's output size",
    "lr": "the CLIENT's learning rate (FedAvg targets, fake gradients); not the attack's step size",
    "local_steps": "number of local SGD steps T of the client (FedAvg)",
    "local_batch_size": "client's local batch size B (unrolled FedAvg); default: the whole dummy batch",
    "weights_after": "client's weights after local training (dict by name or list); with lr and local_steps "
                     "gives the target (W0 - WT) / (T lr) when gradients is None",
    "updates": "multi-update: list of (weights_before, gradient) pairs of one client (same data)",
    "clip_norm": "DP-SGD's per-example clipping norm C (target 'clipped', method 'ig-dpsgd'): the dummy gradient "
                 "is the mean of per-example gradients each clipped to norm <= C, as Opacus computes it",
    "bn_statistics": "client-reported BN batch statistics [(mean, var)] per BN layer, for the 'bn' regularizer",
    "callback": "callable(step, x_model_space, match_loss) called every log_every steps and at the end",
    "log_every": "steps between callback calls / history entries; default 10",
    "return_result": "return an InversionTrace (inputs, labels, history, timings) instead of a tensor",
    "early_stop": "stop on a plateau of the tracked matching loss: True (measured default), a dict of "
                  "fedsim.attacks.inversion.early_stop.EarlyStop fields (patience, rel_tol, min_steps) or None (off, "
                  "the default); step-decay runs jump to the next lr phase first",
    "restart_regularizers": "one regularizers dict per restart (len == restarts) replacing regularizers= for that "
                            "restart: R settings optimised as one batch (ig-auto's batched=True: one TV weight each); "
                            "the trace's options then hold restart_losses and restart_inputs (each restart's best)",
    "init_inputs": "a warm start: dummy inputs in model space, [K, C, H, W] (every restart) or [R, K, C, H, W], "
                   "replacing the random initialisation (e.g. another method's reconstruction; "
                   "python -m benchmarks.tv_weight truth starts at the true images to measure where the objective "
                   "itself leads)",
    "shared_init": "every restart starts from restart 0's initial point (with restart_regularizers: the R settings "
                   "then differ only in their regularisers, as R separate runs with one seed)",
}


@dataclass
class InversionTrace:
    """What an inversion produced (the engine's trace, ``return_result=True``; the live pipeline's typed result is
    ``fedsim.core.types.InversionResult``); ``inputs`` are in model space [K, C, H, W]."""

    method: str
    inputs: torch.Tensor
    labels: torch.Tensor | None
    best_loss: float
    history: list[tuple[int, float]]
    steps: int
    seconds: float
    seconds_per_step: float
    options: dict[str, Any]
    stop_reason: str = "budget"  # "budget" (all steps run), "plateau" (early_stop) or "non-finite"


def validate_options(options: Mapping[str, Any]) -> None:
    valid = set(SPEC_FIELDS) | set(EXTRA_OPTIONS) | set(ALIASES)
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"invert: unknown options {unknown}; valid options: {sorted(valid)}")


def resolve_spec(spec: InversionSpec, options: Mapping[str, Any], steps: int) -> tuple[InversionSpec, dict]:
    """Apply per-call overrides to the method's spec, check them; return (spec, non-spec options)."""
    validate_options(options)
    options = {ALIASES.get(k, k): v for k, v in options.items()}
    spec = dataclasses.replace(spec, **{k: v for k, v in options.items() if k in SPEC_FIELDS})
    extra = {k: v for k, v in options.items() if k not in SPEC_FIELDS}
    for name, value, valid in (("target", spec.target, TARGETS), ("label_mode", spec.label_mode, LABEL_MODES),
                               ("model_mode", spec.model_mode, ("train", "eval"))):
        if value not in valid:
            raise ValueError(f"{name}: {value!r} is not one of {valid}")
    spec = dataclasses.replace(spec, regularizers=_regularizers.check_regularizers(spec.regularizers))
    _objectives.get_distance(spec.distance)
    if steps < 1 or spec.restarts < 1:
        raise ValueError(f"need steps >= 1 and restarts >= 1, got {steps}, {spec.restarts}")
    if "bn" in spec.regularizers and spec.target in ("unrolled", "clipped"):
        raise ValueError(f"the 'bn' regularizer is not available with target={spec.target!r}")
    per_restart = extra.get("restart_regularizers")
    if per_restart is not None:
        if len(per_restart) != spec.restarts:
            raise ValueError(f"restart_regularizers: {len(per_restart)} entries for restarts={spec.restarts}")
        extra["restart_regularizers"] = [_regularizers.check_regularizers(r) for r in per_restart]
        merged = {k: w for r in extra["restart_regularizers"] for k, w in r.items()}  # presence checks below
        spec = dataclasses.replace(spec, regularizers={**merged, **spec.regularizers})
    if spec.target == "clipped" and not float(extra.get("clip_norm", 0.0)) > 0:
        raise ValueError("target 'clipped' (ig-dpsgd) needs clip_norm=C > 0, DP-SGD's per-example clipping norm")
    return spec, extra


@dataclass
class Variables:
    """The optimisation state: dummy inputs [R, K, ...], optional soft labels [R, K, C], optimiser, schedule."""

    x: torch.Tensor
    soft: torch.Tensor | None
    optimizer: torch.optim.Optimizer
    schedule: Any
    lo: torch.Tensor
    hi: torch.Tensor

    @property
    def leaves(self) -> list[torch.Tensor]:
        return [self.x] + ([self.soft] if self.soft is not None else [])


def _warm_start(init_inputs, restarts: int, shape: tuple[int, ...]) -> torch.Tensor:
    """``init_inputs`` as [R, K, C, H, W] (a [K, C, H, W] tensor repeated for every restart)."""
    x = torch.as_tensor(init_inputs).detach()
    if tuple(x.shape) == shape[1:]:
        x = x.unsqueeze(0).expand(restarts, *shape[1:])
    if tuple(x.shape) != (restarts,) + shape[1:]:
        raise ValueError(f"init_inputs: shape {tuple(x.shape)} is neither {shape[1:]} (K, C, H, W) nor "
                         f"{(restarts,) + shape[1:]} (R, K, C, H, W)")
    return x


def init_variables(problem: Problem, spec: InversionSpec, steps: int, seed: int,
                   shared_init: bool = False, init_inputs=None) -> Variables:
    """Initialise stage. Random numbers come from a seeded CPU generator (same init on every device);
    ``shared_init``: one draw (that of a single-restart run) repeated for every restart; ``init_inputs``: a warm
    start in model space instead of a draw."""
    gen = torch.Generator().manual_seed(int(seed))
    r = 1 if shared_init else spec.restarts
    shape = (r, problem.k) + problem.input_shape
    cast = dict(device=problem.device, dtype=problem.dtype)
    if init_inputs is not None:
        x = _warm_start(init_inputs, spec.restarts, (spec.restarts, problem.k) + problem.input_shape).to(**cast)
    else:
        x = _optim.init_dummy(spec.init, shape, problem.mean.cpu(), problem.std.cpu(), gen).to(**cast)
    x = x.expand(spec.restarts, *shape[1:]).clone().requires_grad_(True)
    soft = None
    groups = [{"params": [x], "lr": spec.attack_lr}]
    if spec.label_mode == "joint":
        soft = torch.randn((r, problem.k, problem.num_classes), generator=gen, dtype=problem.dtype)
        soft = soft.expand(spec.restarts, -1, -1).clone().to(problem.device).requires_grad_(True)
        groups.append({"params": [soft], "lr": spec.label_lr or spec.attack_lr})
    params = groups if spec.optimizer != "lbfgs" else [x] + ([soft] if soft is not None else [])
    optimizer = _optim.make_optimizer(spec.optimizer, params, spec.attack_lr, line_search=spec.line_search)
    lo, hi = _optim.box_bounds(problem.mean, problem.std)
    return Variables(x, soft, optimizer, _optim.make_schedule(spec.schedule, optimizer, steps), lo, hi)


class Objective:
    """Evaluate stage: normalised matching loss of every restart plus the weighted regularisers."""

    def __init__(self, problem: Problem, spec: InversionSpec, per_restart: Sequence[Mapping] | None = None) -> None:
        self.problem, self.spec, self.per_restart = problem, spec, per_restart
        weights = _objectives.layer_weights(spec.layer_weights, len(problem.names))
        self.matcher = GradientMatcher(problem, spec.distance, weights, spec.target,
                                       want_bn="bn" in spec.regularizers, batch_restarts=spec.batch_restarts)
        self.match0: torch.Tensor | None = None

    def __call__(self, v: Variables) -> tuple[torch.Tensor, torch.Tensor]:
        """(scalar objective, per-restart matching loss [R] detached)."""
        match, stats = self.matcher(v.x, v.soft)
        total = match
        if self.spec.normalize_match:
            # regulariser weights become relative to the initial matching loss (a constant factor per run),
            # which makes them portable across models whose gradient scales differ by orders of magnitude
            if self.match0 is None:
                self.match0 = match.detach().clamp_min(1e-30)
            total = match / self.match0
        total = total.sum()
        if self.spec.regularizers:
            p = self.problem
            per_restart = [tuple((m[g], s[g]) for m, s in stats) for g in range(v.x.shape[0])] if stats else []
            pixel = v.x * p.std + p.mean
            if self.per_restart is None:
                ctx = _regularizers.RegularizerContext(x=v.x, pixel=pixel, bn_stats=per_restart,
                                                       bn_reference=list(p.bn_reference))
                reg = _regularizers.regularizer_loss(self.spec.regularizers, ctx)
            else:  # restart g with its own weights (each term of a restart only sees that restart)
                reg = sum(_regularizers.regularizer_loss(w, _regularizers.RegularizerContext(
                    x=v.x[g:g + 1], pixel=pixel[g:g + 1], bn_stats=per_restart[g:g + 1],
                    bn_reference=list(p.bn_reference))) for g, w in enumerate(self.per_restart))
            if self.spec.regularizer_decay:  # the prior helps early; late steps refine against the gradient alone
                reg = reg * (v.optimizer.param_groups[0]["lr"] / self.spec.attack_lr)
            total = total + reg
        return total, match.detach()


class BestTracker:
    """Track stage: the best iterate of each restart by matching loss (non-finite values never win)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.loss = torch.full((x.shape[0],), math.inf, dtype=torch.float64)
        self.x = x.detach().clone()

    def update(self, losses: torch.Tensor, x: torch.Tensor) -> None:
        losses = losses.detach().to("cpu", torch.float64)
        better = torch.isfinite(losses) & (losses < self.loss)
        if bool(better.any()):
            self.loss = torch.where(better, losses, self.loss)
            self.x[better.to(self.x.device)] = x.detach()[better.to(self.x.device)]

    def best(self) -> tuple[int, float, torch.Tensor]:
        g = int(self.loss.argmin())
        return g, float(self.loss[g]), self.x[g]


@dataclass
class _Loop:
    """Bookkeeping of the step loop (history, timings, the L-BFGS rescaling)."""

    objective: Objective
    spec: InversionSpec
    tracker: BestTracker
    raw: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    match: torch.Tensor | None = None
    history: list = field(default_factory=list)
    step_times: list = field(default_factory=list)

    def closure(self, v: Variables) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            v.optimizer.zero_grad()
            total, match = self.objective(v)  # evaluate
            # divide by a constant (same minimiser): the value at the start of the current L-BFGS run.
            # PyTorch's L-BFGS skips curvature pairs with y.s <= 1e-10, so on a tiny objective it degrades to
            # gradient descent; the loop restarts L-BFGS with a new scale when the objective fell 1000-fold.
            self.raw = total.detach().abs()
            if self.scale is None:
                self.scale = self.raw.clamp_min(1e-30)
            (total / self.scale).backward(inputs=v.leaves)  # backward: dummy variables only
            if self.spec.signed:  # precondition (Inverting Gradients' signed gradient)
                for leaf in v.leaves:
                    if leaf.grad is not None:
                        leaf.grad.sign_()
            self.match = match
            self.tracker.update(match, v.x)
            return total / self.scale
        return run

    def step(self, v: Variables, step: int) -> float:
        t0 = time.perf_counter()
        loss = v.optimizer.step(self.closure(v))  # step
        if v.schedule is not None:  # schedule
            v.schedule.step()
        if self.spec.box:  # project
            with torch.no_grad():
                v.x.copy_(torch.maximum(torch.minimum(v.x, v.hi), v.lo))
        self.step_times.append(time.perf_counter() - t0)
        if self.spec.optimizer == "lbfgs" and float(self.raw) < 1e-3 * float(self.scale):
            self.scale = self.raw.clamp_min(1e-30)
            v.optimizer.state.clear()
        return float(loss.detach())


def _run_steps(loop: _Loop, v: Variables, steps: int, log_every: int, callback: Callable | None,
               plateau: Plateau | None = None) -> tuple[int, str]:
    """The step loop; returns (steps run, why it ended: one of early_stop.STOP_REASONS)."""
    done, reason = 0, "budget"
    for step in range(steps):
        loss = loop.step(v, step)
        done = step + 1
        if not math.isfinite(loss):
            reason = "non-finite"
            break
        stop = (plateau is not None and step < steps - 1 and plateau.update(float(loop.tracker.loss.min()), step)
                and not plateau.next_phase(v.schedule, v.optimizer))
        if step % log_every == 0 or step == steps - 1 or stop:
            current = float(loop.match.min())
            loop.history.append((step, current))
            if callback is not None:
                callback(step, loop.tracker.best()[2].clone(), current)
        if stop:
            reason = "plateau"
            break
    return done, reason


def run_gradient_matching(name: str, spec: InversionSpec, *, model: nn.Module, gradients=None, labels=None,
                          input_shape: Sequence[int], steps: int = 1000, mean=(0.0,), std=(1.0,),
                          seed: int = 0, **options) -> InversionTrace | torch.Tensor:
    """Run the stages above; returns the reconstruction [K, C, H, W] (model space) or an InversionTrace."""
    t_start = time.perf_counter()
    spec, extra = resolve_spec(spec, options, steps)
    problem = build_problem(spec, model=model, gradients=gradients, labels=labels, input_shape=input_shape,
                            mean=mean, std=std, extra=extra)
    v = init_variables(problem, spec, steps, seed, bool(extra.get("shared_init", False)), extra.get("init_inputs"))
    objective = Objective(problem, spec, extra.get("restart_regularizers"))
    loop = _Loop(objective, spec, BestTracker(v.x))
    callback = extra.get("callback")
    rule = as_early_stop(extra.get("early_stop"))
    plateau = Plateau(rule) if rule is not None else None
    # subnormal floats (objective values near 1e-38 late in a run) slow CPU arithmetic by 10x or more;
    # flushing them is process-global, so it is switched back off (PyTorch's default) afterwards
    torch.set_flush_denormal(True)
    try:
        done, reason = _run_steps(loop, v, steps, int(extra.get("log_every", 10)), callback, plateau)
        with torch.enable_grad():  # finalise: the closure saw only pre-step points; score the last iterate
            loop.tracker.update(objective.matcher(v.x.detach(), None if v.soft is None else v.soft.detach())[0],
                                v.x)
    finally:
        torch.set_flush_denormal(False)
        objective.matcher.close()
    g_best, best_loss, out = loop.tracker.best()
    if spec.box:
        out = torch.maximum(torch.minimum(out, v.hi), v.lo)
    labels_out = problem.hard_labels.clone() if problem.hard_labels is not None else v.soft.detach()[g_best].argmax(-1)
    median_step = float(torch.tensor(loop.step_times).median()) if loop.step_times else float("nan")
    if callback is not None and loop.history and loop.history[-1][0] != done - 1:
        callback(done - 1, out.clone(), best_loss)
    kept = {k: v_ for k, v_ in extra.items() if k in ("lr", "local_steps", "local_batch_size", "num_samples")}
    if plateau is not None:
        kept.update(early_stop=dataclasses.asdict(rule), lr_drops_on_plateau=plateau.lr_drops)
    if "restart_regularizers" in extra:  # one setting per restart: every restart's best iterate is a result
        every = loop.tracker.x.detach()
        if spec.box:
            every = torch.maximum(torch.minimum(every, v.hi), v.lo)
        kept.update(restart_regularizers=extra["restart_regularizers"], restart_losses=loop.tracker.loss.tolist(),
                    restart_inputs=every.clone())
    result = InversionTrace(method=name, inputs=out.detach(), labels=labels_out, best_loss=best_loss,
                            history=loop.history, steps=done, seconds=time.perf_counter() - t_start,
                            seconds_per_step=median_step, options={**dataclasses.asdict(spec), **kept},
                            stop_reason=reason)
    return result if extra.get("return_result") else result.inputs
