"""``[defense]``: one table per mechanism (the schemas); what each table means (on, description, applier,
accounting, load checks, capture record) is its defense object, ``fedsim.core.defense_builtin`` via
``fedsim.core.defense_registry``.

==========================  ==========================================================================
table                       what applies it
==========================  ==========================================================================
``[defense.update]``        ``fedsim.clients.mods.update_defense_mod`` (clip, noise, top-k / rand-k, quantization
                            of ``W_after - W_before``; pure functions in ``fedsim.core.defenses``)
``[defense.local_dp]``      Flower's ``LocalDpMod`` (ClientApp mod)
``[defense.central_dp]``    Flower's ``DifferentialPrivacy{Server,Client}SideFixedClipping`` strategy wrapper
                            (plus Flower's ``fixedclipping_mod`` on the ClientApp for ``clipping = "client"``)
``[defense.dp_sgd]``        training hook: Opacus DP-SGD (``fedsim.core.dp_sgd``)
``[defense.secagg]``        Flower's SecAgg+: ``secaggplus_mod`` (ClientApp) + ``SecAggPlusWorkflow`` (server)
``[defense.training]``      training hook: label smoothing / mixup loss (``fedsim.core.defended_training``)
==========================  ==========================================================================

Flower flattens nested tables of ``[tool.flwr.app.config]`` and of ``--run-config`` TOML files to dotted keys
at any depth (``flwr.common.config.flatten_dict``), so ``[defense.dp_sgd] noise_multiplier = 1.0`` reaches
``context.run_config`` as ``"defense.dp_sgd.noise_multiplier"``. The flat keys of the old single ``[defense]``
table are refused with the new key (:data:`RENAMED`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def opt(default: Any, *, choices: tuple[str, ...] | None = None, minimum: float | None = None,
        maximum: float | None = None, doc: str = "", listed: bool = False) -> Any:
    """A config field with validation metadata (same metadata as ``fedsim.core.config.opt``)."""
    return field(default=default, metadata={"choices": choices, "min": minimum, "max": maximum, "doc": doc,
                                            "list": listed})


@dataclass(frozen=True)
class UpdateDefense:
    """``[defense.update]``: post-processing of the update a client sends (all 0 = off)."""

    clip_norm: float = opt(0.0, minimum=0.0, doc="L2 clip of the whole update W_after-W_before (0 = off)")
    noise_std: float = opt(0.0, minimum=0.0, doc="Gaussian noise std added to each update coordinate")
    topk_ratio: float = opt(0.0, minimum=0.0, maximum=1.0, doc="keep ceil(ratio*n) largest entries (0 = off)")
    randk_ratio: float = opt(0.0, minimum=0.0, maximum=1.0, doc="keep ceil(ratio*n) random entries (0 = off)")
    sparsify_scope: str = opt("tensor", choices=("tensor", "global"), doc="n per tensor or over the update")
    quant_bits: int = opt(0, minimum=0, maximum=16, doc="uniform quantization of the update (0 = off)")


@dataclass(frozen=True)
class LocalDp:
    """``[defense.local_dp]``: Flower's ``LocalDpMod`` (clip + Gaussian noise on each client's update)."""

    enabled: bool = opt(False, doc="run Flower's LocalDpMod on every ClientApp")
    clip_norm: float = opt(1.0, minimum=1e-12, doc="LocalDpMod clipping norm C (replace-one sensitivity 2 C)")
    epsilon: float = opt(10.0, minimum=1e-12, doc="LocalDpMod's calibration: noise std C sqrt(2 ln(1.25/delta)) / "
                         "epsilon (Flower's, at sensitivity C); the privacy rows account it at 2 C")
    delta: float = opt(1e-5, minimum=1e-12, maximum=1.0, doc="LocalDpMod delta")


@dataclass(frozen=True)
class CentralDp:
    """``[defense.central_dp]``: Flower's central-DP fixed-clipping strategy wrappers."""

    clipping: str = opt("off", choices=("off", "server", "client"),
                        doc="where updates are clipped: server-side wrapper, or client-side fixedclipping_mod")
    noise_multiplier: float = opt(1.0, minimum=0.0, doc="central DP noise multiplier")
    clip_norm: float = opt(1.0, minimum=1e-12, doc="central DP clipping norm")


@dataclass(frozen=True)
class DpSgd:
    """``[defense.dp_sgd]``: per-example DP-SGD with Opacus (a training hook)."""

    enabled: bool = opt(False, doc="Opacus DP-SGD (Poisson sampling, RDP accountant) instead of plain SGD")
    noise_multiplier: float = opt(1.0, minimum=0.0, doc="Opacus noise multiplier")
    max_grad_norm: float = opt(1.0, minimum=1e-12, doc="Opacus per-example clipping norm")
    delta: float = opt(1e-5, minimum=1e-12, maximum=1.0, doc="delta for the reported epsilon")


@dataclass(frozen=True)
class SecAgg:
    """``[defense.secagg]``: Flower's SecAgg+ (``secaggplus_mod`` + ``SecAggPlusWorkflow``)."""

    enabled: bool = opt(False, doc="Flower SecAgg+: the server sees only the unmasked aggregate")
    num_shares: int = opt(0, minimum=0, doc="Shamir shares per client secret (0 = every sampled client; else >= 3)")
    reconstruction_threshold: int = opt(0, minimum=0, doc="shares needed to recover a secret: 0 = the safe "
                                        "minimum num_shares // 2 + 1; else above num_shares / 2 and below "
                                        "num_shares (SAFE_THRESHOLD); a round survives while this many clients "
                                        "remain")
    max_weight: float = opt(0.0, minimum=0.0, doc="largest num-examples a client may weight its update by "
                            "(0 = train.batch_size for FedSGD, data.max_examples_per_client or 1000 for FedAvg)")
    clipping_range: float = opt(8.0, minimum=1e-6, doc="weights are clipped to [-range, range] before quantisation")
    quantization_range: int = opt(4194304, minimum=2, doc="integer levels of the quantiser (2**22; at least "
                                  "MIN_QUANTIZATION_LEVELS = 2**16 when enabled)")
    modulus_range: int = opt(4294967296, minimum=4, maximum=4294967296, doc="modulus of the masked integer "
                             "arithmetic (a power of 2, > quantization_range)")


@dataclass(frozen=True)
class TrainingDefense:
    """``[defense.training]``: losses of local training (a training hook)."""

    label_smoothing: float = opt(0.0, minimum=0.0, maximum=1.0, doc="label smoothing in local training")
    mixup_alpha: float = opt(0.0, minimum=0.0, doc="mixup Beta(alpha, alpha) in local training (0 = off)")


@dataclass(frozen=True)
class CustomDefense:
    """``[defense.custom]``: your own Flower client mods and server strategy wrappers (``fedsim.core.defense_custom``).
    Flower's run-config values are scalars, so each list (a TOML array or a comma-separated string) is kept as one
    comma-separated string (``fedsim.core.lists``)."""

    mods: str = opt("", listed=True, doc="'package.module:attr' Flower client mods (msg, ctxt, call_next) -> "
                    "Message, run innermost (right around train(), inside fedsim's update defenses), in order")
    strategy_wrappers: str = opt("", listed=True, doc="'package.module:attr' callables (strategy) -> Strategy "
                                 "(Message API), wrapped around the curious server's stack, first innermost")
    options: str = opt("", doc="[defense.custom.options]: the mods' options (bool/int/float/str; carried as one "
                       "JSON string); a mod reads them with fedsim.core.defense_custom.options(ctxt)")


@dataclass(frozen=True)
class DefenseSection:
    """Client- and server-side defenses, all off by default; see docs/benchmarks/defenses.md."""

    update: UpdateDefense = field(default_factory=UpdateDefense)
    local_dp: LocalDp = field(default_factory=LocalDp)
    central_dp: CentralDp = field(default_factory=CentralDp)
    dp_sgd: DpSgd = field(default_factory=DpSgd)
    secagg: SecAgg = field(default_factory=SecAgg)
    training: TrainingDefense = field(default_factory=TrainingDefense)
    custom: CustomDefense = field(default_factory=CustomDefense)


#: keys of the old flat ``[defense]`` table -> their key now (None: removed, with the reason)
RENAMED: dict[str, str] = {
    **{f"defense.{k}": f"defense.update.{k}" for k in ("clip_norm", "noise_std", "topk_ratio", "randk_ratio",
                                                       "sparsify_scope", "quant_bits")},
    **{f"defense.{k}": f"defense.training.{k}" for k in ("label_smoothing", "mixup_alpha")},
    "defense.local_dp": "defense.local_dp.enabled",
    "defense.local_dp_clip": "defense.local_dp.clip_norm",
    "defense.local_dp_epsilon": "defense.local_dp.epsilon",
    "defense.local_dp_delta": "defense.local_dp.delta",
    "defense.central_dp": "defense.central_dp.clipping",
    "defense.central_dp_noise": "defense.central_dp.noise_multiplier",
    "defense.central_dp_clip": "defense.central_dp.clip_norm",
    "defense.dp_sgd": "defense.dp_sgd.enabled",
    "defense.dp_sgd_noise": "defense.dp_sgd.noise_multiplier",
    "defense.dp_sgd_max_grad_norm": "defense.dp_sgd.max_grad_norm",
    "defense.dp_sgd_delta": "defense.dp_sgd.delta",
    "defense.secagg": "defense.secagg.enabled",
}
REMOVED: dict[str, str] = {
    "defense.secagg_mask_scale": "removed: Flower's SecAgg+ masks are uniform modulo defense.secagg.modulus_range",
}


def renamed_key_error(key: str) -> str | None:
    """The one-line error for an old flat ``[defense]`` key, or None."""
    if key in RENAMED:
        return f"{key}: [defense] has one table per mechanism now; use {RENAMED[key]}"
    if key in REMOVED:
        return f"{key}: {REMOVED[key]}"
    return None


# ---- cross-section checks: combinations the mechanisms cannot honour ---------------------------------------
@dataclass(frozen=True)
class SecAggPlan:
    """SecAgg+ parameters as the workflow will use them (the cohort size is known from the config)."""

    cohort: int
    num_shares: int
    threshold: int
    max_weight: float


def sampled_clients(cfg: Any) -> int:
    """Clients Flower's legacy FedAvg samples per round: ``max(int(n * fraction), min_train_nodes)``."""
    return max(int(cfg.run.num_clients * cfg.train.fraction_train), cfg.train.min_train_nodes)


#: SAFE_THRESHOLD: SecAgg+ (Bell et al., CCS 2020; SecAgg, Bonawitz et al., CCS 2017) Shamir-shares two secrets
#: of every client among its neighbours: the seed of its self mask and the key of its pairwise masks. In the
#: unmask stage an honest neighbour reveals a share of one of them only (self-mask seed if the client survived,
#: mask key if it dropped). A server that tells some neighbours the client dropped and others that it survived
#: gets both secrets, and so the client's unmasked update, from two disjoint sets of ``t`` neighbours; with
#: ``t > num_shares / 2`` two such sets cannot exist. Flower's SecAggPlusWorkflow docstring: "higher
#: reconstruction_threshold means better privacy guarantees but less tolerance to dropouts" (it sets no bound).
def safe_threshold(num_shares: int) -> int:
    """The smallest reconstruction threshold above ``num_shares / 2`` (the default, ``threshold = 0``)."""
    return num_shares // 2 + 1


#: Flower's SecAgg+ (``flwr.common.secure_aggregation.quantization``) clips every weight to [-clipping_range,
#: clipping_range] and rounds it stochastically to one of quantization_range levels: one level is
#: 2 * clipping_range / quantization_range. Below 2**16 levels a level exceeds 3e-5 of the clipping range
#: (2.4e-4 at the default range 8), the size of a small FedSGD step, so the aggregate would be mostly
#: quantisation noise (2 levels = 1 bit: every weight becomes +-clipping_range).
MIN_QUANTIZATION_LEVELS = 2**16


def secagg_plan(cfg: Any) -> SecAggPlan:
    s, t = cfg.defense.secagg, cfg.train
    m = sampled_clients(cfg)
    shares = min(s.num_shares, m) if s.num_shares else m
    threshold = s.reconstruction_threshold or safe_threshold(shares)
    if s.max_weight:
        weight = s.max_weight
    elif t.algorithm == "fedsgd":
        weight = float(t.batch_size)
    else:
        weight = float(cfg.data.max_examples_per_client or 1000)
    return SecAggPlan(m, shares, threshold, weight)


def check_secagg(cfg: Any, config_error: type[Exception]) -> None:
    """SecAgg+'s own load checks (``fedsim.core.defense_builtin.SecAggDefense.check``, after the one against central
    DP): no corrupt faults, the shares and threshold Flower's workflow needs, a quantiser and modulus that cannot
    overflow."""
    from fedsim.core.faults_spec import parse_faults

    s = cfg.defense.secagg
    plan = secagg_plan(cfg)
    if s.num_shares and s.num_shares < 3:
        raise config_error(f"defense.secagg.num_shares: {s.num_shares} is below 3 (Flower's SecAgg+ minimum); "
                           "0 = every sampled client")
    if plan.threshold >= plan.num_shares:
        raise config_error(
            f"defense.secagg.reconstruction_threshold: {plan.threshold} must be below the number of shares "
            f"{plan.num_shares} ({plan.cohort} clients sampled per round; raise run.num_clients / "
            "train.min_train_nodes or lower the threshold)")
    if plan.threshold < safe_threshold(plan.num_shares):
        raise config_error(
            f"defense.secagg.reconstruction_threshold: {plan.threshold} is at most half of the {plan.num_shares} "
            f"shares; a server that lies about who dropped could then rebuild a client's masks from two disjoint "
            f"sets of neighbours (valid: {safe_threshold(plan.num_shares)} .. {plan.num_shares - 1}, or 0 = "
            f"{safe_threshold(plan.num_shares)})")
    if s.quantization_range < MIN_QUANTIZATION_LEVELS:
        raise config_error(
            f"defense.secagg.quantization_range: {s.quantization_range} levels is below the minimum "
            f"{MIN_QUANTIZATION_LEVELS} (2**16): one level, 2 * clipping_range / levels = "
            f"{2 * s.clipping_range / s.quantization_range:.3g}, would swamp the update")
    if s.quantization_range * plan.cohort >= s.modulus_range or s.modulus_range & (s.modulus_range - 1):
        raise config_error(
            f"defense.secagg.modulus_range: {s.modulus_range} must be a power of 2 above quantization_range * "
            f"clients = {s.quantization_range * plan.cohort} (else the masked sum overflows)")
    faults = parse_faults(cfg.faults)
    if faults.enabled and faults.corrupt:
        raise config_error("faults.corrupt: SecAgg+ hides individual updates, so a corrupt reply cannot be screened "
                           "and would poison the aggregate; use faults.dropout (recovered by SecAgg+)")
    if faults.enabled:
        for r in range(1, cfg.run.num_rounds + 1):
            left = plan.cohort - sum(faults.drops_out(c, r) for c in range(cfg.run.num_clients))
            if left < plan.threshold:
                raise config_error(
                    f"faults.dropout: only {left} of {plan.cohort} clients remain in round {r}, below "
                    f"defense.secagg.reconstruction_threshold={plan.threshold}; the round could not be unmasked")
