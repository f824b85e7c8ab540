"""Gradient inversion through a generative prior: GGL-style (optimise the latent code z) and GIAS-style
(optimise z, then the generator's weights too).

* ``ggl``: Li et al., "Auditing Privacy Defenses in FL via Generative Gradient Leakage" (CVPR 2022) search
  the latent space of a pretrained GAN (CMA-ES / BO there; Adam on z with restarts here) to match the
  gradient; the image is always on the generator's manifold.
* ``gias``: Jeon et al., "Gradient Inversion with Generative Image Prior" (NeurIPS 2021): latent search
  first, then the generator's parameters are optimised too (per batch here, not per image), which lets the
  image leave the manifold where the gradient asks for it.

Labels are given (e.g. restored by iLRG) and assigned by count; the distance is one of
``fedsim.attacks.inversion.objectives.DISTANCES`` (cosine default). Output: [K, C, H, W] in model space. The model
copy, target, labels, batched matching loss of all restarts, TV and best-iterate bookkeeping are the engine's
(``fedsim.attacks.inversion.problem`` / ``matching`` / ``core.BestTracker``); only the generator parts live here.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Sequence

import torch
from torch.func import functional_call

from fedsim.attacks.generative.prior import DEFAULT_ARCH, arch_prior_path, get_prior, parse_archs
from fedsim.attacks.inversion import objectives as _objectives
from fedsim.attacks.inversion.core import BestTracker, InversionTrace, InversionSpec
from fedsim.attacks.inversion.criterion import gradient_cosine_distance
from fedsim.attacks.inversion.matching import GradientMatcher
from fedsim.attacks.inversion.methods import INVERSION_METHODS, inversion_record
from fedsim.attacks.inversion.problem import build_problem
from fedsim.attacks.inversion.regularizers import RegularizerContext, total_variation
from fedsim.attacks.records import Need

OPTIONS = {
    "prior_path": "safetensors file of the prior (fedsim.attacks.generative.train_prior); reused when present",
    "prior": "an fedsim.attacks.generative.Prior object (overrides prior_path)",
    "aux_images": "public auxiliary images (pixel space) to train the prior when the file is missing",
    "latent_dim": "latent size when the prior is trained here (default 20)",
    "prior_arch": "decoder of a prior trained here (fedsim.attacks.generative.ARCHS; default train_prior's, conv)",
    "prior_archs": "decoders to try (tuple or comma-separated): with more than one, the attack runs once per "
                   "decoder's prior (prior_path's file for conv, <stem>-<arch> beside it for the others) and keeps "
                   "the reconstruction with the lowest criterion (gradient cosine distance of its simulated update, "
                   "no ground truth); the trace records prior_arch_chosen and prior_criteria",
    "prior_steps": "VAE training steps when the prior is trained here (default 6000, with 1-pixel shift "
                   "augmentation: fedsim.attacks.generative.train_prior)",
    "distance": "gradient distance (fedsim.attacks.inversion.objectives.DISTANCES), default cosine",
    "layer_weights": "per-layer weights of the distance",
    "attack_lr": "Adam step size on z (default 0.1)",
    "latent_weight": "weight of the N(0, I) latent penalty mean(z^2) (default 1e-3)",
    "tv": "total variation weight on the generated image (default 0)",
    "restarts": "independent z initialisations optimised jointly; the best is kept (default 4)",
    "gias_fraction": "gias: fraction of steps spent on the generator weights after the z search (default 0.5)",
    "gias_lr": "gias: Adam step size on the generator weights (default 1e-4)",
    "combine": "after the latent search, build the batch image by image from all restarts' codes, keeping a swap "
               "when it lowers the matching loss (default False)",
    "return_result": "return an InversionTrace",
    # accepted for invert()/pipeline compatibility, ignored
    "num_samples": "ignored (K is len(labels))",
    "lr": "the client's lr: only for the criterion of prior_archs (FedSGD gradients; FedAvg fake gradients are "
          "matched like one gradient)",
    "local_steps": "only for the criterion of prior_archs (T > 1: the client's T steps simulated)",
    "local_batch_size": "only for the criterion of prior_archs",
}


def _setup(model, gradients, labels, input_shape, mean, std, options, seed):
    """Engine stages reused: the problem (model copy, target, labels, device/dtype) and the batched matcher."""
    spec = InversionSpec(distance=options.get("distance", "cosine"), layer_weights=options.get("layer_weights"))
    problem = build_problem(spec, model=model, gradients=gradients, labels=labels, input_shape=input_shape,
                            mean=mean, std=std, extra={})
    weights = _objectives.layer_weights(spec.layer_weights, len(problem.names))
    matcher = GradientMatcher(problem, spec.distance, weights, "gradient")
    # only the training options given here: train_prior's defaults (latent 20, 6000 steps) are the one source
    train: dict[str, Any] = {key: int(options[name]) for name, key in (("latent_dim", "latent_dim"),
                                                                       ("prior_steps", "steps")) if name in options}
    if "prior_arch" in options:
        train["arch"] = str(options["prior_arch"])
    prior = get_prior(options.get("prior_path"), prior=options.get("prior"), aux_images=options.get("aux_images"),
                      seed=seed, **train)
    if tuple(prior.image_shape) != problem.input_shape:
        raise ValueError(f"prior generates {prior.image_shape} images but the model takes {problem.input_shape}")
    decoder = copy.deepcopy(prior.decoder).to(device=problem.device, dtype=problem.dtype)
    return problem, matcher, prior, decoder


class _Objective:
    """Matching loss of generated images (normalised by its value at the initial z) + latent and TV penalties."""

    def __init__(self, problem, matcher, decoder, lat_w: float, tv_w: float) -> None:
        self.p, self.matcher, self.decoder = problem, matcher, decoder
        self.lat_w, self.tv_w = lat_w, tv_w
        self.scale: torch.Tensor | None = None

    def __call__(self, z: torch.Tensor, dec_params) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r, k = z.shape[:2]
        pix = functional_call(self.decoder, dec_params, (z.reshape(r * k, -1),)).view(r, k, *self.p.input_shape)
        x = (pix - self.p.mean) / self.p.std
        per, _ = self.matcher(x)
        # the matching loss is divided by its value at the initial z (like the engine's normalize_match): on
        # untrained models 1 - cos is ~1e-5 everywhere and would drown under the latent / TV penalties
        if self.scale is None:
            self.scale = per.detach().mean().clamp_min(1e-30)
        total = (per / self.scale).sum() + self.lat_w * z.pow(2).mean(dim=(1, 2)).sum()
        if self.tv_w:
            total = total + self.tv_w * total_variation(RegularizerContext(x=x, pixel=pix))
        return total, per.detach(), x


def _latent_search(obj: _Objective, z: torch.Tensor, dec_params, steps: int, lr: float,
                   history) -> tuple[BestTracker, torch.Tensor]:
    """GGL stage: Adam on z (all restarts at once), step decay at 1/2 and 3/4; best iterate per restart, and the
    matching loss per restart of the final z."""
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(steps * f) for f in (0.5, 0.75)], gamma=0.3)
    tracker = None
    for step in range(steps):
        total, per, x = obj(z, dec_params)
        tracker = tracker or BestTracker(x)
        tracker.update(per, x)
        opt.zero_grad()
        total.backward(inputs=[z])
        opt.step()
        sched.step()
        if step % 10 == 0:
            history.append((step, float(per.min())))
    with torch.enable_grad():
        _, per, x = obj(z, dec_params)
    tracker.update(per, x)
    return tracker, per


def _combine_restarts(obj: _Objective, z: torch.Tensor, per: torch.Tensor,
                      dec_params) -> tuple[torch.Tensor, float, torch.Tensor | None]:
    """Greedy per-image combination of the restarts (one coordinate pass): start from the restart with the lowest
    matching loss (``per``: the loss of each restart's final ``z``) and, slot by slot, take the code another
    restart found for that image when the whole batch's matching loss falls. The server's own signal only; the R
    candidates of a slot are one batched evaluation. Returns the combined codes [1, K, d], their matching loss and
    their images [K, C, H, W] (None when no swap was taken: the codes are that restart's own)."""
    z = z.detach()
    best = int(per.argmin())
    cur, cur_loss, cur_x = z[best:best + 1].clone(), float(per[best]), None
    if z.shape[0] < 2:
        return cur, cur_loss, cur_x
    for k in range(z.shape[1]):
        cand = cur.repeat(z.shape[0], 1, 1)
        cand[:, k] = z[:, k]
        with torch.enable_grad():
            _, per_c, x_c = obj(cand, dec_params)
        r = int(per_c.argmin())
        if float(per_c[r]) < cur_loss:
            cur, cur_loss, cur_x = cand[r:r + 1].clone(), float(per_c[r]), x_c.detach()[r]
    return cur, cur_loss, cur_x


def _free_generator(obj: _Objective, z: torch.Tensor, dec_params, steps: int, lr: float, gias_lr: float,
                    tracker: BestTracker, offset: int, history) -> None:
    """GIAS stage: keep the best restart's z and optimise it together with the generator's weights."""
    dp = {n: p.detach().clone().requires_grad_(True) for n, p in dec_params.items()}
    opt = torch.optim.Adam([{"params": list(dp.values()), "lr": gias_lr}, {"params": [z], "lr": lr}])
    for step in range(steps + 1):
        total, per, x = obj(z, dp)
        tracker.update(per, x)  # one restart left: slot 0 of a fresh tracker row
        if step == steps:
            break
        opt.zero_grad()
        total.backward(inputs=[z] + list(dp.values()))
        opt.step()
        if step % 10 == 0:
            history.append((offset + step, float(per[0])))


def invert_generative(mode: str, *, model, gradients=None, labels=None, input_shape: Sequence[int],
                      steps: int = 300, mean=(0.0,), std=(1.0,), seed: int = 0, **options: Any):
    """Run GGL (``mode="ggl"``) or GIAS (``mode="gias"``); see the module docstring and :data:`OPTIONS`."""
    if mode not in ("ggl", "gias"):
        raise ValueError(f"mode must be 'ggl' or 'gias', got {mode!r}")
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"{mode}: unknown options {unknown}; valid options: {sorted(OPTIONS)}")
    if labels is None:
        raise ValueError(f"{mode} needs labels=... (e.g. fedsim.attacks.labels.restore_labels('ilrg', ...).labels)")
    if gradients is None:
        raise ValueError(f"{mode} needs gradients=... (a FedSGD gradient or a FedAvg fake gradient)")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t_start = time.perf_counter()
    problem, matcher, prior, decoder = _setup(model, gradients, labels, input_shape, mean, std, options, seed)
    r = int(options.get("restarts", 4))
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(r, problem.k, prior.latent_dim, generator=gen, dtype=problem.dtype).to(problem.device)
    z.requires_grad_(True)
    dec_params = {n: p.detach() for n, p in decoder.named_parameters()}
    obj = _Objective(problem, matcher, decoder, float(options.get("latent_weight", 1e-3)),
                     float(options.get("tv", 0.0)))
    lr = float(options.get("attack_lr", 0.1))
    gias_steps = int(round(steps * float(options.get("gias_fraction", 0.5)))) if mode == "gias" else 0
    z_steps = max(1, steps - gias_steps)
    history: list[tuple[int, float]] = []
    try:
        tracker, final_per = _latent_search(obj, z, dec_params, z_steps, lr, history)
        g_best, best_loss, x_best = tracker.best()
        z_best = z.detach()[g_best:g_best + 1].clone()
        if options.get("combine", False):
            z_comb, comb_loss, x_comb = _combine_restarts(obj, z, final_per, dec_params)
            if x_comb is not None and comb_loss < best_loss:
                z_best, x_best = z_comb, x_comb
                tracker = BestTracker(x_comb.unsqueeze(0))
                tracker.update(torch.tensor([comb_loss]), x_comb.unsqueeze(0))
                g_best = 0
        if gias_steps:
            z_best = z_best.requires_grad_(True)
            stage2 = BestTracker(x_best.unsqueeze(0))
            stage2.update(tracker.loss[g_best:g_best + 1], x_best.unsqueeze(0))
            _free_generator(obj, z_best, dec_params, gias_steps, 0.1 * lr, float(options.get("gias_lr", 1e-4)),
                            stage2, z_steps, history)
            tracker = stage2
    finally:
        matcher.close()
    _, best_loss, out = tracker.best()
    seconds = time.perf_counter() - t_start
    result = InversionTrace(method=mode, inputs=out.detach(), labels=problem.hard_labels.clone(),
                            best_loss=best_loss, history=history, steps=steps, seconds=seconds,
                            seconds_per_step=seconds / steps,
                            options={k_: v for k_, v in options.items()
                                     if k_ not in ("prior", "aux_images", "return_result")})
    return result if options.get("return_result") else result.inputs


#: criteria below this are float32 round-off of 1 - cos (LeNet-5 sigmoid ends near 1e-7 with either decoder:
#: docs/benchmarks/defenses.md); decoders that both reach it tie, and the earlier one in prior_archs is kept
CRITERION_FLOOR = 1e-6


def pick_decoder(mode: str, archs: Sequence[str], **kwargs: Any):
    """Run ``mode`` once per decoder's prior and keep the reconstruction the server would act on: the lowest
    criterion (:func:`fedsim.attacks.inversion.criterion.gradient_cosine_distance` of its simulated update against
    the observed one; no ground truth). Why one would: the conv decoder wins on ReLU-family victims and the MLP on
    a sigmoid LeNet-5, and on held-out ConvNets the lower criterion named the better decoder on 5 of 6 updates.
    Measured live it misleads: on the DP frontier's undefended point it picked the MLP decoder on 5 of 9 updates,
    each time the worse image, 19.8 dB against the conv decoder's 20.5 (docs/benchmarks/defenses.md), so it is
    opt-in and the default stays the conv decoder alone."""
    if kwargs.get("prior") is not None:
        raise ValueError(f"{mode}: prior_archs needs prior_path= (one file per decoder), not a prior= object")
    base = kwargs.get("prior_path")
    lr = kwargs.get("lr")
    local_steps = int(kwargs.get("local_steps") or 1) if lr else 1  # without the client's lr: one step
    traces: dict[str, InversionTrace] = {}
    criteria: dict[str, float] = {}
    for arch in archs:
        one = {**kwargs, "prior_arch": arch, "return_result": True,
               "prior_path": None if base is None else str(arch_prior_path(base, arch))}
        trace = invert_generative(mode, **one)
        traces[arch] = trace
        value = gradient_cosine_distance(kwargs["model"], trace.inputs, trace.labels, kwargs["gradients"], lr=lr,
                                         local_steps=local_steps, local_batch_size=kwargs.get("local_batch_size"))
        criteria[arch] = value if value == value else float("inf")  # NaN never wins
    chosen = min(archs, key=lambda a: (max(criteria[a], CRITERION_FLOOR), archs.index(a)))
    best = traces[chosen]
    best = dataclasses.replace(best, seconds=sum(t.seconds for t in traces.values()),
                               options={**best.options, "prior_archs": list(archs), "prior_arch_chosen": chosen,
                                        "prior_criteria": criteria})
    return best if kwargs.get("return_result") else best.inputs


def _dispatch(mode: str, kwargs: dict[str, Any]):
    archs = parse_archs(kwargs.pop("prior_archs")) if "prior_archs" in kwargs else (DEFAULT_ARCH,)
    if len(archs) > 1:
        return pick_decoder(mode, archs, **kwargs)
    if archs != (DEFAULT_ARCH,):
        kwargs.setdefault("prior_arch", archs[0])
        if kwargs.get("prior_path") is not None:
            kwargs["prior_path"] = str(arch_prior_path(kwargs["prior_path"], archs[0]))
    return invert_generative(mode, **kwargs)


def invert_ggl(**kwargs):
    return _dispatch("ggl", kwargs)


def invert_gias(**kwargs):
    return _dispatch("gias", kwargs)


def decoder_signals(trace: Any, k: int) -> list[str]:
    """A generative method's trace, read live: the decoder its criterion picked (``prior_archs``)."""
    options = getattr(trace, "options", {}) or {}
    if "prior_arch_chosen" not in options:
        return []
    crit = ", ".join(f"{a} {v:.3g}" for a, v in options["prior_criteria"].items())
    return [f"self-tuned: decoder {options['prior_arch_chosen']} by the criterion ({crit})"]


# generative-prior methods: options prior_path=, latent_dim=, ... (OPTIONS); the prior is trained on the public
# split, so every reconstruction uses it (signal "public split")
INVERSION_METHODS.register(inversion_record(
    "ggl", "Li et al.: Auditing Privacy Defenses in FL via Generative Gradient Leakage (CVPR 2022)",
    "optimise the latent code of a generator (VAE decoder trained by the server on public aux data, "
    "prior_path=) to match the gradient (cosine), Adam with restarts, labels given",
    run=invert_ggl, kind="generative", needs=(Need.TRAINED_PRIOR,), signals=("public split",),
    trace_signals=decoder_signals))
INVERSION_METHODS.register(inversion_record(
    "gias", "Jeon et al.: Gradient Inversion with Generative Image Prior (NeurIPS 2021)",
    "ggl's latent search, then the generator's weights are optimised too (gias_fraction of the steps)",
    run=invert_gias, kind="generative", needs=(Need.TRAINED_PRIOR,), signals=("public split",),
    trace_signals=decoder_signals))
