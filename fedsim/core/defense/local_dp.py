"""``[defense.local_dp]``: Flower's ``LocalDpMod`` on every ClientApp (clip each update to C, add Gaussian noise;
applier ``"local_dp"`` of ``fedsim.clients.mods``). The server composes its epsilon over the rounds aggregated so
far and writes it per round (:meth:`LocalDpDefense.privacy_rows`, from both server stacks), at replace-one
sensitivity 2 C (``fedsim.core.accounting.local_dp_epsilon``; the mod's own (epsilon, delta) assumes C).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fedsim.core import accounting
from fedsim.core.accounting import Spent
from fedsim.core.defense.base import CLIENT_MOD, PRIVACY_DELTA, Applier, Defense, RoundRelease, opt, spent_rows

if TYPE_CHECKING:
    from fedsim.core.rows import PrivacyRow


@dataclass(frozen=True)
class LocalDp:
    """``[defense.local_dp]``: Flower's ``LocalDpMod`` (clip + Gaussian noise on each client's update)."""

    enabled: bool = opt(False, doc="run Flower's LocalDpMod on every ClientApp")
    clip_norm: float = opt(1.0, minimum=1e-12, doc="LocalDpMod clipping norm C (replace-one sensitivity 2 C)")
    epsilon: float = opt(10.0, minimum=1e-12, doc="LocalDpMod's calibration: noise std C sqrt(2 ln(1.25/delta)) / "
                         "epsilon (Flower's, at sensitivity C); the privacy rows account it at 2 C")
    delta: float = opt(1e-5, minimum=1e-12, maximum=1.0, doc="LocalDpMod delta")


class LocalDpDefense(Defense):
    """``[defense.local_dp]``: Flower's ``LocalDpMod``; the server composes its epsilon per aggregated round."""

    table, schema, dp, hides_train_loss = "local_dp", LocalDp, True, True

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

    def privacy_rows(self, cfg: Any, t: LocalDp, rnd: RoundRelease) -> list[PrivacyRow]:
        """What the rounds aggregated so far spent (a lost round releases nothing: no row)."""
        if not rnd.aggregated:
            return []
        return spent_rows(self.spent(cfg, t, rnd.released, PRIVACY_DELTA, None), rnd.server_round)


LOCAL_DP = LocalDpDefense()
