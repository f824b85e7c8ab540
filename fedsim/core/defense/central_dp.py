"""``[defense.central_dp]``: Flower's central-DP fixed-clipping strategy wrappers (McMahan et al., ICLR 2018), plus
Flower's ``fixedclipping_mod`` on the ClientApp for ``clipping = "client"``.

The strategy wrapper is applied by ``fedsim.server.defense_wiring.central_dp_wrapper`` (applier ``"central_dp"``);
the server's ``fedsim.server.central_dp.CentralDpRelease`` writes its privacy rows per release as it ran (the
noise actually added, the cohort actually aggregated), so :meth:`CentralDpDefense.privacy_rows` writes none.
Accounting: ``fedsim.core.accounting.central_dp_epsilon`` (client level, replace-one, cohort without replacement).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedsim.core import accounting
from fedsim.core.accounting import Spent
from fedsim.core.defense.base import CLIENT_MOD, STRATEGY, Applier, Defense, opt, sampled_clients


@dataclass(frozen=True)
class CentralDp:
    """``[defense.central_dp]``: Flower's central-DP fixed-clipping strategy wrappers."""

    clipping: str = opt("off", choices=("off", "server", "client"),
                        doc="where updates are clipped: server-side wrapper, or client-side fixedclipping_mod")
    noise_multiplier: float = opt(1.0, minimum=0.0, doc="central DP noise multiplier")
    clip_norm: float = opt(1.0, minimum=1e-12, doc="central DP clipping norm")


class CentralDpDefense(Defense):
    """``[defense.central_dp]``: Flower's fixed-clipping strategy wrapper (+ ``fixedclipping_mod`` for "client")."""

    table, schema, dp, hides_train_loss, equal_weights = "central_dp", CentralDp, True, True, True

    def on(self, t: CentralDp) -> bool:
        return t.clipping != "off"

    def parts(self, t: CentralDp) -> list[tuple[str, str]]:
        return [(f"central DP z {t.noise_multiplier:g}, clip {t.clip_norm:g}", "central DP")]

    def appliers(self, t: CentralDp) -> tuple[Applier, ...]:
        server = (Applier(STRATEGY, "central_dp"),)
        return server + ((Applier(CLIENT_MOD, "fixedclipping", 30),) if t.clipping == "client" else ())

    def spent(self, cfg: Any, t: CentralDp, rounds: int, delta: float, client_examples: int | None) -> list[Spent]:
        m, n = sampled_clients(cfg), cfg.run.num_clients
        return [Spent("central_dp", accounting.central_dp_epsilon(t.noise_multiplier, rounds, delta, min(m, n), n),
                      delta, accountant="dp-accounting-rdp", releases=rounds,
                      note=f"client-level, replace-one, cohort {m} of {n} without replacement, denominator {m}",
                      relation=accounting.relation_of("central_dp", t.clip_norm, m))]


CENTRAL_DP = CentralDpDefense()
