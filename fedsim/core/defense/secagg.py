"""``[defense.secagg]``: Flower's SecAgg+ (Bell et al., CCS 2020): ``secaggplus_mod`` on the ClientApp (applier
``"secagg"`` of ``fedsim.clients.mods``, with ``fedsim.clients.secagg``) and ``SecAggPlusWorkflow`` on the server
(workflow ``"secagg"``: ``fedsim.server.secagg``, which writes the privacy rows of the defenses inside each client
through the same ``Defense.privacy_rows`` as the Message-API stack). The curious server sees only the cohort's
aggregate, captured as client :data:`AGGREGATE_CLIENT`.

Here: the table, the object, the plan the workflow will run (:func:`secagg_plan`) and the load checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedsim.core.defense.base import CLIENT_MOD, WORKFLOW, Applier, Defense, opt, sampled_clients
from fedsim.core.defense.central_dp import CENTRAL_DP

#: client id of a secure aggregate in captures and rows (its cohort in ``ClientUpdate.cohort``)
AGGREGATE_CLIENT = 9999


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


class SecAggDefense(Defense):
    """``[defense.secagg]``: Flower's SecAgg+ (``secaggplus_mod`` + ``SecAggPlusWorkflow``)."""

    table, schema, hides_train_loss, aggregate_only = "secagg", SecAgg, True, True

    def parts(self, t: SecAgg) -> list[tuple[str, str]]:
        return [("SecAgg+", "SecAgg+")]

    def appliers(self, t: SecAgg) -> tuple[Applier, ...]:
        return (Applier(CLIENT_MOD, "secagg", 10), Applier(WORKFLOW, "secagg"))

    def check(self, cfg: Any, config_error: type[Exception]) -> None:
        c = cfg.defense.central_dp
        if CENTRAL_DP.on(c):
            raise config_error(
                f"defense.secagg.enabled: cannot be combined with defense.central_dp.clipping={c.clipping!r} "
                "(server-side clipping needs the individual updates SecAgg+ hides; Flower's client-side wrapper is a "
                "Message-API strategy that the legacy SecAgg+ workflow cannot drive); use defense.local_dp or "
                "defense.dp_sgd")
        check_secagg(cfg, config_error)


SECAGG = SecAggDefense()


@dataclass(frozen=True)
class SecAggPlan:
    """SecAgg+ parameters as the workflow will use them (the cohort size is known from the config)."""

    cohort: int
    num_shares: int
    threshold: int
    max_weight: float


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
    """SecAgg+'s own load checks (:meth:`SecAggDefense.check`, after the one against central DP): no corrupt
    faults, the shares and threshold Flower's workflow needs, a quantiser and modulus that cannot overflow."""
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
