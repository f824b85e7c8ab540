"""The built-in defenses, one :class:`~fedsim.core.defense_object.Defense` per ``[defense.*]`` table of
``fedsim.core.defense_config`` (registered, in this order, by ``fedsim.core.defense_registry.BUILTIN``).

Nothing here imports torch or Opacus at import time: loading a config without DP-SGD stays torch-free
(``fedsim.core.dp_sgd`` and Opacus' accountant are imported inside :meth:`check` / :meth:`spent`).
"""

from __future__ import annotations

from typing import Any

from fedsim.core import accounting
from fedsim.core.accounting import Spent
from fedsim.core.defense_config import (CentralDp, DpSgd, LocalDp, SecAgg, TrainingDefense, UpdateDefense,
                                   check_secagg)
from fedsim.core.defense_object import CLIENT_MOD, STRATEGY, TRAINING_HOOK, WORKFLOW, Applier, Defense


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _nonzero(*parts: tuple[float, str, str]) -> list[tuple[str, str]]:
    """(label, family) of each (amount, label, family) whose amount is non-zero, in order."""
    return [(label, family) for amount, label, family in parts if amount]


class DpSgdDefense(Defense):
    """``[defense.dp_sgd]``: Opacus DP-SGD, a training hook; its clients report their epsilon."""

    table, schema, dp, privacy_rows, hides_train_loss = "dp_sgd", DpSgd, True, "clients", True

    def parts(self, t: DpSgd) -> list[tuple[str, str]]:
        return [(f"DP-SGD sigma {t.noise_multiplier:g}, clip {t.max_grad_norm:g}", "DP-SGD")]

    def appliers(self, t: DpSgd) -> tuple[Applier, ...]:
        return (Applier(TRAINING_HOOK, "dp_sgd"),)

    def check(self, cfg: Any, config_error: type[Exception]) -> None:
        from fedsim.core.dp_sgd import check_dp_sgd_model

        mix = cfg.defense.training.mixup_alpha
        if mix > 0:  # defenses.mixup_step_loss: record i enters its own and perm^-1(i)'s clipped gradient
            raise config_error(
                f"defense.training.mixup_alpha: {mix:g} cannot be combined with defense.dp_sgd.enabled: mixup puts "
                "each record into two clipped per-example gradients (sensitivity 2 C, epsilon accounts C); set "
                "mixup_alpha = 0 (label_smoothing is fine)")
        check_dp_sgd_model(cfg, config_error)  # Opacus' ModuleValidator: BatchNorm refused before Flower starts

    def spent(self, cfg: Any, t: DpSgd, rounds: int, delta: float, client_examples: int | None) -> list[Spent]:
        if not client_examples:  # q = B / n needs the client's partition size
            return []
        from fedsim.core.dp_sgd import dp_sgd_steps

        tr = cfg.train
        q, steps = dp_sgd_steps(client_examples, tr.algorithm, tr.batch_size, tr.local_epochs, tr.max_local_steps)
        return [Spent("dp_sgd", accounting.dp_sgd_epsilon(t.noise_multiplier, q, steps * rounds, t.delta), t.delta,
                      releases=steps * rounds, note="record-level, per client",
                      relation=accounting.relation_of("dp_sgd", t.max_grad_norm))]


class CentralDpDefense(Defense):
    """``[defense.central_dp]``: Flower's fixed-clipping strategy wrapper (+ ``fixedclipping_mod`` for "client")."""

    table, schema, dp, privacy_rows, hides_train_loss, equal_weights = (
        "central_dp", CentralDp, True, "wrapper", True, True)

    def on(self, t: CentralDp) -> bool:
        return t.clipping != "off"

    def parts(self, t: CentralDp) -> list[tuple[str, str]]:
        return [(f"central DP z {t.noise_multiplier:g}, clip {t.clip_norm:g}", "central DP")]

    def appliers(self, t: CentralDp) -> tuple[Applier, ...]:
        server = (Applier(STRATEGY, "central_dp"),)
        return server + ((Applier(CLIENT_MOD, "fixedclipping", 30),) if t.clipping == "client" else ())

    def spent(self, cfg: Any, t: CentralDp, rounds: int, delta: float, client_examples: int | None) -> list[Spent]:
        from fedsim.core.defense_config import sampled_clients

        m, n = sampled_clients(cfg), cfg.run.num_clients
        return [Spent("central_dp", accounting.central_dp_epsilon(t.noise_multiplier, rounds, delta, min(m, n), n),
                      delta, accountant="dp-accounting-rdp", releases=rounds,
                      note=f"client-level, replace-one, cohort {m} of {n} without replacement, denominator {m}",
                      relation=accounting.relation_of("central_dp", t.clip_norm, m))]


class LocalDpDefense(Defense):
    """``[defense.local_dp]``: Flower's ``LocalDpMod``; the server composes its epsilon per aggregated round."""

    table, schema, dp, privacy_rows, hides_train_loss = "local_dp", LocalDp, True, "server", True

    def parts(self, t: LocalDp) -> list[tuple[str, str]]:
        return [(f"local DP eps {t.epsilon:g}/round, clip {t.clip_norm:g}", "local DP")]

    def appliers(self, t: LocalDp) -> tuple[Applier, ...]:
        return (Applier(CLIENT_MOD, "local_dp", 20),)

    def spent(self, cfg: Any, t: LocalDp, rounds: int, delta: float, client_examples: int | None) -> list[Spent]:
        return [Spent("local_dp", accounting.local_dp_epsilon(t.epsilon, t.delta, rounds, delta), delta,
                      releases=rounds,
                      note="RDP composition at sensitivity 2 C (replace-one); the mod's own (epsilon, delta) "
                           "per release assumes C and is not claimed",
                      relation=accounting.relation_of("local_dp", t.clip_norm))]


class UpdateDefenseDefense(Defense):
    """``[defense.update]``: clip / noise / sparsify / quantise the update (``fedsim.clients.mods.update_defense_mod``)."""

    table, schema = "update", UpdateDefense

    def on(self, t: UpdateDefense) -> bool:
        return bool(t.clip_norm or t.noise_std or t.topk_ratio or t.randk_ratio or t.quant_bits)

    def parts(self, t: UpdateDefense) -> list[tuple[str, str]]:
        return _nonzero((t.topk_ratio, f"top-k {_pct(t.topk_ratio)}", "top-k"),
                        (t.randk_ratio, f"random-k {_pct(t.randk_ratio)}", "random-k"),
                        (t.clip_norm, f"update clip {t.clip_norm:g}", "update clip"),
                        (t.noise_std, f"update noise {t.noise_std:g}", "update noise"),
                        (t.quant_bits, f"{t.quant_bits}-bit quantization", "quantization"))

    def appliers(self, t: UpdateDefense) -> tuple[Applier, ...]:
        return (Applier(CLIENT_MOD, "update", 40),)


class TrainingLossDefense(Defense):
    """``[defense.training]``: label smoothing / mixup loss, a training hook (``fedsim.core.defended_training``)."""

    table, schema = "training", TrainingDefense

    def on(self, t: TrainingDefense) -> bool:
        return bool(t.label_smoothing or t.mixup_alpha)

    def parts(self, t: TrainingDefense) -> list[tuple[str, str]]:
        return _nonzero((t.label_smoothing, f"label smoothing {t.label_smoothing:g}", "label smoothing"),
                        (t.mixup_alpha, f"mixup {t.mixup_alpha:g}", "mixup"))

    def appliers(self, t: TrainingDefense) -> tuple[Applier, ...]:
        return (Applier(TRAINING_HOOK, "training_loss"),)


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


DP_SGD, CENTRAL_DP, LOCAL_DP = DpSgdDefense(), CentralDpDefense(), LocalDpDefense()
UPDATE, TRAINING, SECAGG = UpdateDefenseDefense(), TrainingLossDefense(), SecAggDefense()
