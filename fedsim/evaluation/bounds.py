"""The DP mechanism an attacked update was released under, and the reconstruction bound beside its scores.

For each attacked update the mechanism in force (from the update's recorded defense settings and the run's
config, as ``fedsim.core.defense`` accounts it) as a :class:`fedsim.core.reconstruction_bound.Mechanism`:

* DP-SGD (Opacus): example level, add/remove one example, sensitivity C (noise multiplier in units of C), Poisson
  rate ``q = B / n`` (``fedsim.core.defense.dp_sgd.dp_sgd_steps``), ``steps per round x round`` compositions (the client
  assumed to have taken part in every round so far, as its epsilon does);
* local DP (Flower's LocalDpMod): the client's update clipped to C with noise ``z C``,
  ``z = sqrt(2 ln(1.25 / delta)) / epsilon``; one example changes the clipped update by up to 2C (replace-one),
  so sensitivity 2 in units of C, one release per round, no sampling.

* central DP (``fedsim.server.central_dp``): the server releases ``W + sum(clipped deltas) / m + N(0, (z C/m)^2)``;
  client level (one example's re-identification is implied: replace-one changes the client's whole data),
  replace-one, sensitivity ``2 C / m``, noise ``z C / m``: in units of ``C / m`` a Gaussian of std ``z`` on
  sensitivity 2, so ``mu = 2 / z`` per release, the accountant's multiplier ``z / 2``
  (``fedsim.core.accounting.central_dp_epsilon``). Assumption: the attacked client is in the cohort of the attacked
  round (as the DP-SGD bound assumes the target in the batch) and, further, in every earlier round's cohort: no
  sampling credit at all, so the bound is ``mu = 2 sqrt(rounds) / z`` and never below the truth. Why not the
  accountant's amplification for the earlier rounds: ``dp_accounting``'s PLD has no sampling-without-replacement
  event, and its REPLACE_ONE ``sampling_prob`` is Poisson's (an unsampled round sits at distance ``C / m`` from
  each neighbour), while in a fixed-size cohort the client's seat goes to another client, up to ``2 C / m`` away;
  the RDP accountant's amplified epsilon is lower than this bound's (an f-DP curve without the credit).
  **What the bound covers:** the released model. The curious server attacks the clipped, *un-noised* reply
  (Flower's wrapper adds the noise to the aggregate), which no noise protects: a central-DP inversion row carries
  ``reid_bound = 1`` and the release's bound in ``bound_mechanism`` (:func:`central_dp_note`).

The pipeline's re-identification scores only the examples that were in the attacked step's batch, so its bound is
conditioned on inclusion: the attacked round's steps count without sampling (``in_batch_steps``); the
ORACLE-PRIOR attack scores every example of the partition, so its bound keeps the sampling.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from fedsim.core.defense.base import DefenseRecord
from fedsim.core.reconstruction_bound import Mechanism, reconstruction_bound


def mechanism_of(cfg: Any, update: Any, client_examples: int | None = None, in_batch: bool = False
                 ) -> Mechanism | None:
    """The DP mechanism the update (and the client's earlier releases) ran under, None without one in force.
    ``in_batch``: the attacked round's steps accounted without sampling (a score of the batch's examples)."""
    forced = DefenseRecord.of(update.defenses).in_force  # the recorded tables, typed
    rnd = max(1, int(update.server_round))
    if "dp_sgd" in forced:
        from fedsim.core.defense.dp_sgd import dp_sgd_steps

        n = client_examples or _partition_size(cfg, update)
        tr = cfg.train
        q, steps = dp_sgd_steps(n, update.algorithm, tr.batch_size, tr.local_epochs, tr.max_local_steps)
        return Mechanism(float(forced["dp_sgd"].noise_multiplier), sample_rate=q, steps=steps * rnd,
                         in_batch_steps=steps if in_batch else 0)
    if "local_dp" in forced:
        from fedsim.core.accounting import local_dp_noise_multiplier

        ldp = forced["local_dp"]
        z = local_dp_noise_multiplier(float(ldp.epsilon), float(ldp.delta))
        return Mechanism(z, steps=rnd, sensitivity=2.0, relation="replace-one")
    return None


def central_dp_mechanism(noise_multiplier: float, rounds: int) -> Mechanism:
    """The central-DP release's mechanism after ``rounds`` releases, in units of ``C / m``: Gaussian std ``z``,
    sensitivity 2 (replace-one, ``2 C / m``), the attacked client in every cohort (no sampling credit): ``mu = 2
    sqrt(rounds) / z``, never below what the accountant's ``z / 2`` with amplification allows."""
    rounds = max(1, int(rounds))
    return Mechanism(float(noise_multiplier), steps=rounds, sensitivity=2.0, relation="replace-one")


def central_dp_on(update: Any) -> bool:
    return "central_dp" in DefenseRecord.of(update.defenses).in_force


def central_dp_note(update: Any, kappa: float) -> str:
    """``bound_mechanism`` of a central-DP reply: why its bound is 1, and the released model's bound."""
    rnd = max(1, int(update.server_round))
    central = DefenseRecord.of(update.defenses).table("central_dp")
    mech = central_dp_mechanism(float(central.noise_multiplier if central is not None else 1.0), rnd)
    return (f"central DP: the attacked reply is clipped, not noised (bound 1); the released model's bound "
            f"{reconstruction_bound(mech, kappa):.3g} (client level, replace-one, sensitivity 2 C/m, noise "
            f"{mech.noise_multiplier:g} C/m, {rnd} release(s), the client in every cohort: no sampling credit)")


def _partition_size(cfg: Any, update: Any) -> int:
    from fedsim.core.experiment import client_indices

    return len(client_indices(cfg, int(update.client_id), int(cfg.run.num_clients)))


def with_reid_bound(row: Any, cfg: Any, update: Any) -> Any:
    """An inversion row with ``reid_bound`` (at its re-identification chance level) and ``bound_mechanism``,
    when a DP mechanism was in force and the row was scored for re-identification; else the row unchanged."""
    kappa = getattr(row, "ident_reid_chance", None)
    if kappa is None or not math.isfinite(kappa) or kappa <= 0:
        return row
    mech = mechanism_of(cfg, update, in_batch=True)
    if mech is None:
        if central_dp_on(update) and not getattr(update, "cohort", None):
            return dataclasses.replace(row, reid_bound=1.0, bound_mechanism=central_dp_note(update, float(kappa)))
        return row
    return dataclasses.replace(row, reid_bound=reconstruction_bound(mech, float(kappa)),
                               bound_mechanism=mech.describe())
