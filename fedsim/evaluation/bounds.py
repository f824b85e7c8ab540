"""The DP mechanism an attacked update was released under, and the reconstruction bound beside its scores.

For each attacked update the mechanism in force (from the update's recorded defense settings and the run's
config, as ``fedsim.core.defense_builtin`` accounts it) as a :class:`fedsim.core.reconstruction_bound.Mechanism`:

* DP-SGD (Opacus): example level, add/remove one example, sensitivity C (noise multiplier in units of C), Poisson
  rate ``q = B / n`` (``fedsim.core.dp_sgd.dp_sgd_steps``), ``steps per round x round`` compositions (the client
  assumed to have taken part in every round so far, as its epsilon does);
* local DP (Flower's LocalDpMod): the client's update clipped to C with noise ``z C``,
  ``z = sqrt(2 ln(1.25 / delta)) / epsilon``; one example changes the clipped update by up to 2C (replace-one),
  so sensitivity 2 in units of C, one release per round, no sampling.

Central DP (client level, Flower's wrapper) is not covered here: its effective multiplier moves with the replies a
round averaged and its relation is being restated (issue 35); its rows carry no bound yet.

The pipeline's re-identification scores only the examples that were in the attacked step's batch, so its bound is
conditioned on inclusion: the attacked round's steps count without sampling (``in_batch_steps``); the
ORACLE-PRIOR attack scores every example of the partition, so its bound keeps the sampling.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from fedsim.core.reconstruction_bound import Mechanism, reconstruction_bound


def mechanism_of(cfg: Any, update: Any, client_examples: int | None = None, in_batch: bool = False
                 ) -> Mechanism | None:
    """The DP mechanism the update (and the client's earlier releases) ran under, None without one in force.
    ``in_batch``: the attacked round's steps accounted without sampling (a score of the batch's examples)."""
    d = update.defenses
    rnd = max(1, int(update.server_round))
    if d.get("defense.dp_sgd.enabled"):
        from fedsim.core.dp_sgd import dp_sgd_steps

        n = client_examples or _partition_size(cfg, update)
        tr = cfg.train
        q, steps = dp_sgd_steps(n, update.algorithm, tr.batch_size, tr.local_epochs, tr.max_local_steps)
        return Mechanism(float(d.get("defense.dp_sgd.noise_multiplier", 0.0)), sample_rate=q, steps=steps * rnd,
                         in_batch_steps=steps if in_batch else 0)
    if d.get("defense.local_dp.enabled"):
        from fedsim.core.accounting import local_dp_noise_multiplier

        z = local_dp_noise_multiplier(float(d["defense.local_dp.epsilon"]), float(d["defense.local_dp.delta"]))
        return Mechanism(z, steps=rnd, sensitivity=2.0, relation="replace-one")
    return None


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
        return row
    return dataclasses.replace(row, reid_bound=reconstruction_bound(mech, float(kappa)),
                               bound_mechanism=mech.describe())
