"""Registered inversion methods: each is a paper's settings of the generic engine (or an analytic formula).

| name | paper | objective | regularisers / prior | optimiser / init | labels |
|---|---|---|---|---|---|
| ``dlg`` | Zhu, Liu, Han, "Deep Leakage from Gradients", NeurIPS 2019 | L2 | none | L-BFGS lr 1, N(0,1) | joint soft labels |
| ``idlg`` | Zhao, Mopuri, Bilen, "iDLG", 2020 | L2 | none | L-BFGS lr 1, N(0,1) | analytic (batch 1) |
| ``ig`` | Geiping et al., "Inverting Gradients", NeurIPS 2020 | cosine | TV | signed Adam lr 0.1, step decay, box, N(0,1) | given |
| ``geng`` | Geng et al., "Towards General Deep Leakage in FL" (FedSGD, eq. 9-19) | L2 (eq. 10) | TV + clip + scale | L-BFGS, U(0,1) | given (zero-shot restored) |
| ``geng-fedavg`` | Geng et al. Sec. 3.5, eq. 24 (fake gradient) | cosine (eq. 24: per layer, option) | TV + clip + scale | L-BFGS, U(0,1) | given |
| ``gradinversion`` | Yin et al., "See through Gradients: GradInversion", CVPR 2021 | L2 | BN + TV + L2 + group consistency | Adam, restarts jointly | given |
| ``fedavg-unrolled`` | breaching multi-step objective; Dimitrov et al., "Data Leakage in Federated Averaging", TMLR 2022 | cosine on simulated T-step update | TV | signed Adam, step decay, box | given |
| ``multi-update`` | Geng et al. Alg. 2 (several updates of one client on the same data) | mean L2 over updates | TV + clip + scale | L-BFGS, U(0,1) | given |
| ``ig-masked`` | Inverting Gradients adapted to sparsified updates (top-k / random-k) | cosine on the sent (non-zero) coordinates | TV | as ``ig`` | given |
| ``ig-dpsgd`` | Inverting Gradients adapted to DP-SGD (Abadi et al. 2016 clipping; defense-aware attacker of Balunović et al., ICLR 2022) | cosine to the mean of per-example dummy gradients clipped to the known C | TV | as ``ig`` | given |
| ``analytic-fc`` | Phong et al. 2018; Geiping et al. 2020 (biased first FC layer) | closed form | - | - | - |
| ``spear`` | Dimitrov et al., "SPEAR: Exact Gradient Inversion of Batches in FL", NeurIPS 2024 (first FC + ReLU) | exact: low rank + ReLU sparsity | - | sampling | - |
| ``spear++`` | Bakarsky et al., "SPEAR++", 2025 (sparsely-used dictionary learning) | exact: as spear | - | l1 (ER-SpUD) | - |
| ``ggl`` | Li et al., "Generative Gradient Leakage", CVPR 2022 (attacks/generative) | cosine | generator (VAE on public aux data) | Adam on z, restarts | given |
| ``gias`` | Jeon et al., "Gradient Inversion with Generative Image Prior", NeurIPS 2021 | cosine | generator, then its weights freed | Adam on z, then z + weights | given |

Hyper-parameters are CPU-sized defaults tuned on LeNet/ConvNet with 28x28 and 32x32 images (see
docs/benchmarks/inversion.md); the papers' values are noted where they differ.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from torch import nn

from fedsim.attacks.inversion.analytic import analytic_fc
from fedsim.attacks.inversion.spear import spear, spear_pp
from fedsim.attacks.inversion.core import InversionSpec, run_gradient_matching
from fedsim.attacks.records import AttackMethod, Registry
from fedsim.core.types import ClientUpdate


@dataclass(frozen=True)
class EngineRun:
    """The callable of an optimisation method: its ``InversionSpec`` run by the generic engine
    (``run_gradient_matching``). ``model_tv``: the TV weight follows the model (``ig_tv_for``) unless
    ``regularizers=`` is given."""

    name: str
    spec: InversionSpec
    model_tv: bool = False

    def spec_for(self, model: nn.Module | None, options: dict[str, Any]) -> InversionSpec:
        """The spec a call runs with: the TV weight adapted to ``model`` for ``model_tv`` methods, unless the
        caller passes its own ``regularizers=`` (or the old name ``priors=``)."""
        if not self.model_tv or model is None or {"regularizers", "priors"} & set(options):
            return self.spec
        tv = ig_tv_for(model)
        return replace(self.spec, regularizers={**self.spec.regularizers, "tv": tv},
                       regularizer_decay=tv == IG_TV_SMOOTH)

    def __call__(self, **kwargs):
        return run_gradient_matching(self.name, self.spec_for(kwargs.get("model"), kwargs), **kwargs)


def inversion_record(name: str, paper: str, summary: str, spec: InversionSpec | None = None,
                    run: Callable[..., Any] | None = None, kind: str = "inversion", needs: tuple[str, ...] = (),
                    model_tv: bool = False, applies: Callable[[ClientUpdate], Optional[str]] | None = None,
                    traces: bool = False, signals: tuple[str, ...] = (),
                    trace_signals: Callable[[Any, int], list[str]] | None = None) -> AttackMethod:
    """The ``AttackMethod`` record of an inversion method: an engine ``spec`` (an optimisation method, which
    also needs the client's schedule: FedAvg targets are built from it) or a ``run`` callable (a closed form,
    or a generative method of ``kind="generative"``). Engine and generative methods return a trace when asked
    (``traces``); a ``run`` that does too says so with ``traces=True``. ``signals`` / ``trace_signals``: what it
    reports (``AttackMethod``)."""
    if (spec is None) == (run is None):
        raise ValueError(f"{name}: give exactly one of spec= and run=")
    if spec is not None:
        run, needs = EngineRun(name, spec, model_tv), ("client schedule", *needs)
    extra = {"applies": applies} if applies is not None else {}
    traces = traces or spec is not None or kind == "generative"
    return AttackMethod(name, kind, paper, summary, run, needs=tuple(needs), traces=traces, signals=tuple(signals),
                        trace_signals=trace_signals, **extra)


def has_bn_statistics(update: ClientUpdate) -> Optional[str]:
    """``applies`` of the BatchNorm-prior methods: the server sent BatchNorm running statistics (buffers)."""
    if any(k.endswith("running_mean") for k in update.buffers_before):
        return None
    return "needs a model with BatchNorm running statistics; this update's model sent none"


# Inverting Gradients' TV weight. It multiplies the pixel-space TV against the cosine distance divided by its
# value at the initial point; 0.01 (the old default) left batches of 4-16 CIFAR-10 images noisy. Sweeps at 300
# iterations (untrained strided ReLU CNN, batch 1-16, 2 seeds) were flat between 0.4 and 0.8 (batch 4: 12.6 dB
# at 0.01 -> 21.4 dB at 0.4); ResNet-18 wanted more (batch 1, 50 iterations: 10.4 dB at 0.4, 11.5 at 1.5).
# At 1.0 ResNet-18 still trailed breaching (batch 1, 200 iterations: 13.11 vs 13.40 dB); at 2.0 fedsim is ahead
# on both the CNN (batch 1-16, 3 seeds) and ResNet-18 (batch 1-16, 2 seeds): the default for ReLU-type networks.
# Networks whose activations are all smooth (sigmoid, tanh, SiLU, ...) pin the image down through the gradient
# far more (their dummy gradient depends on x through non-zero second derivatives): on LeNet-5 with sigmoid / tanh
# / SiLU (batch 1-8, 2 seeds, 300 iterations) 0.2 beat 2.0 by 1.5-6 dB and breaching in all 18 cells, while 2.0
# lost to breaching on tanh. There the TV also decays with the step size (``regularizer_decay``): the prior
# shapes the early iterates, the late ones refine against the gradient alone, which a smooth network pins down
# (500 iterations, LeNet-5 sigmoid / tanh / SiLU, CIFAR-10 and MNIST, batch 1-8: decayed 0.2 >= constant 0.2 in
# 18 of 18 cells, e.g. MNIST batch 4 sigmoid 86.4 vs 33.1 dB, CIFAR-10 batch 8 19.7 vs 18.8).
# ``ig_tv_for`` picks between the two; docs/benchmarks/peers.md has the numbers.
IG_TV = 2.0
IG_TV_SMOOTH = 0.2
SMOOTH_ACTIVATIONS = (nn.Sigmoid, nn.Tanh, nn.SiLU, nn.GELU, nn.Softplus, nn.Mish, nn.ELU, nn.CELU, nn.SELU,
                      nn.LogSigmoid)
PIECEWISE_LINEAR_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.Hardtanh)


def ig_tv_for(model: nn.Module) -> float:
    """Inverting Gradients' default TV weight for ``model``: ``IG_TV_SMOOTH`` when its activation modules are all
    smooth, else ``IG_TV`` (also when none is found, e.g. activations called as functions: ReLU is the common
    case)."""
    acts = [m for m in model.modules() if isinstance(m, SMOOTH_ACTIVATIONS + PIECEWISE_LINEAR_ACTIVATIONS)]
    if acts and all(isinstance(m, SMOOTH_ACTIVATIONS) for m in acts):
        return IG_TV_SMOOTH
    return IG_TV

_GENG_REGULARIZERS = {"tv": 1e-5, "clip": 1e-4, "scale": 1e-5}  # relative to the initial matching loss

INVERSION_METHODS = Registry("attack.inversion", ("inversion", "generative"), choices=("none",), records=[
    inversion_record(
        "dlg", "Zhu, Liu, Han: Deep Leakage from Gradients (NeurIPS 2019)",
        "squared L2 gradient matching, L-BFGS (lr 1), N(0,1) init, dummy soft labels optimised jointly",
        InversionSpec(distance="l2", optimizer="lbfgs", attack_lr=1.0, init="randn", label_mode="joint")),
    inversion_record(
        "idlg", "Zhao, Mopuri, Bilen: iDLG: Improved Deep Leakage from Gradients (2020)",
        "DLG with the label read off the classifier gradient (batch 1); given labels override",
        InversionSpec(distance="l2", optimizer="lbfgs", attack_lr=1.0, init="randn", label_mode="idlg")),
    inversion_record(
        "ig", "Geiping et al.: Inverting Gradients - How easy is it to break privacy in FL? (NeurIPS 2020)",
        "cosine similarity + total variation (weight 2.0 on ReLU-type models, 0.2 decaying with the step size "
        "on smooth ones: ig_tv_for; "
        "relative to the initial cosine distance, pixel-space "
        "mean |dx| + |dy|), signed Adam lr 0.1, step decay at 3/8, 5/8, 7/8, box constraint",
        InversionSpec(distance="cosine", regularizers={"tv": IG_TV}, optimizer="adam", attack_lr=0.1, signed=True,
                      schedule="step-decay", box=True, init="randn"), model_tv=True),
    inversion_record(
        "geng", "Geng et al.: Towards General Deep Leakage in Federated Learning (arXiv 2021; FedSGD, eq. 10, 17-19)",
        "L2 (sum of layer norms) + TV + clip + scale penalties, L-BFGS, U(0,1) init; works on gradients or "
        "fake gradients (W0 - WT)/(T lr) given as gradients= or as weights_after=, lr=, local_steps=",
        InversionSpec(distance="l2-relative", regularizers=dict(_GENG_REGULARIZERS), optimizer="lbfgs", attack_lr=1.0,
                      init="uniform")),
    inversion_record(
        "geng-fedavg", "Geng et al.: Towards General Deep Leakage in FL (arXiv 2021; FedAvg, Sec. 3.5, eq. 24)",
        "cosine distance to the fake gradient (W0 - WT)/(T lr) + TV + clip + scale, L-BFGS, U(0,1); eq. 24 "
        "sums a cosine per layer (distance='cosine-layerwise'), which stalled L-BFGS in our LeNet runs, so the "
        "default is the global cosine",
        InversionSpec(distance="cosine", regularizers=dict(_GENG_REGULARIZERS), optimizer="lbfgs", attack_lr=1.0,
                      init="uniform")),
    inversion_record(
        "gradinversion", "Yin et al.: See through Gradients: Image Batch Recovery via GradInversion (CVPR 2021)",
        "L2 matching + BatchNorm statistics prior (running stats or bn_statistics=) + TV + L2 + group "
        "consistency across restarts optimised jointly (no registration); needs a model with BatchNorm",
        InversionSpec(distance="l2", regularizers={"bn": 0.01, "tv": 0.01, "l2": 1e-5, "group": 0.01},
                      optimizer="adam", attack_lr=0.1, schedule="step-decay", box=True, init="randn",
                      restarts=2), needs=("buffers",), applies=has_bn_statistics),
    inversion_record(
        "fedavg-unrolled", "breaching multi-step objective; Dimitrov et al.: Data Leakage in Federated Averaging "
        "(TMLR 2022)",
        "simulate the client's local_steps SGD steps (lr=, local_batch_size=) on the dummy batch with "
        "functional_call and create_graph, match the simulated update (fake-gradient form) by cosine + TV",
        InversionSpec(distance="cosine", regularizers={"tv": 0.01}, optimizer="adam", attack_lr=0.1, signed=True,
                      schedule="step-decay", box=True, init="randn", target="unrolled")),
    inversion_record(
        "multi-update", "Geng et al.: Towards General Deep Leakage in FL (arXiv 2021), Alg. 2 (multiple updates "
        "consistency)",
        "one client's several (weights_before, gradient) pairs on the same data (updates=[...]) matched jointly "
        "(mean L2) + TV + clip + scale, L-BFGS, U(0,1) init",
        InversionSpec(distance="l2-relative", regularizers=dict(_GENG_REGULARIZERS), optimizer="lbfgs", attack_lr=1.0,
                      init="uniform", target="multi")),
    inversion_record(
        "ig-masked", "Geiping et al. (NeurIPS 2020) adapted to sparsified updates (the defense-aware attacker)",
        "ig whose cosine distance only compares the coordinates the client sent (non-zero in the observed "
        "update): under top-k / random-k the dropped coordinates no longer pull the dummy gradient to 0",
        InversionSpec(distance="cosine-masked", regularizers={"tv": IG_TV}, optimizer="adam", attack_lr=0.1,
                      signed=True, schedule="step-decay", box=True, init="randn"), model_tv=True),
    inversion_record(
        "ig-dpsgd", "Geiping et al. (NeurIPS 2020) adapted to DP-SGD's per-example clipping (Abadi et al., CCS "
        "2016); the defense-aware adversary of Balunovic et al., Bayesian Framework for Gradient Leakage (ICLR 2022)",
        "ig whose dummy gradient is computed as the DP-SGD client computes its update: per-example gradients, each "
        "clipped to the known clip_norm= C, averaged; clipping re-weights the examples of a batch, which plain "
        "ig's summed gradient does not model (noise is left to the cosine)",
        InversionSpec(distance="cosine", regularizers={"tv": IG_TV}, optimizer="adam", attack_lr=0.1, signed=True,
                      schedule="step-decay", box=True, init="randn", target="clipped"),
        needs=("DP-SGD clip norm",), model_tv=True),
    inversion_record(
        "analytic-fc", "Phong et al. 2018; Geiping et al. 2020 (a biased first fully connected layer leaks x)",
        "closed form x = grad_W[i] / grad_b[i] (least squares over active rows); exact for batch 1",
        run=analytic_fc),
    inversion_record(
        "spear", "Dimitrov, Baader, Mueller, Vechev: SPEAR: Exact Gradient Inversion of Batches in Federated "
        "Learning (NeurIPS 2024)",
        "whole batch exactly from a first nn.Linear + ReLU: rank-B factorisation of grad_W, sampled (B-1)-row null "
        "vectors filtered by ReLU sparsity, greedy selection by ReLU-pattern agreement, scale from grad_b; "
        "exponential in B (attacks/inversion/spear.py)",
        run=spear, traces=True),
    inversion_record(
        "spear++", "Bakarsky, Dimitrov, Baader, Vechev: SPEAR++: Scaling Gradient Inversion via Sparsely-Used "
        "Dictionary Learning (arXiv 2025)",
        "spear with the sampling replaced by ER-SpUD l1 problems min ||L q||_1 s.t. l_j^T q = 1 (ADMM or HiGHS), "
        "rounding and hard-threshold refinement (attacks/inversion/spear.py)",
        run=spear_pp, traces=True),
])


# The methods built on other methods register their records where they are defined, so this module imports none
# of them: ig-auto (fedsim.attacks.inversion.autotune), ig-shadow (fedsim.attacks.inversion.shadow), ggl and gias
# (fedsim.attacks.generative.invert); the package fedsim.attacks.inversion imports those modules after this one.


def invert(method: str, *, model, gradients=None, labels=None, input_shape, steps: int = 1000,
           mean=(0.0,), std=(1.0,), seed: int = 0, **options: Any) -> Any:
    """Run a registered inversion method; returns the reconstruction [K, C, H, W] in model space, or its
    ``InversionTrace`` with ``return_result=True`` (an unknown name: the registry's one-line ``ConfigError``)."""
    return INVERSION_METHODS[method](model=model, gradients=gradients, labels=labels, input_shape=input_shape,
                                     steps=steps, mean=mean, std=std, seed=seed, **options)


def register_inversion_method(record: AttackMethod) -> AttackMethod:
    """Register an inversion (or generative) method defined anywhere; its name is then valid in
    ``attack.inversion``."""
    return INVERSION_METHODS.register(record)
