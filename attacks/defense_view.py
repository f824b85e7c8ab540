"""The client-side update defenses as the server knows them, applied to an update the server simulates itself.

The ``[defense]`` settings are public in the threat model (the server configured them; Kerckhoffs' principle), and
they travel in every capture's ``defenses`` record. A server that calibrates its attack on a shadow update
(``ig-shadow``: ``fedsim.attacks.inversion.shadow``) should calibrate on a shadow defended as the client's update
was: a sparsified or noised update wants another prior weight than a clean one. :class:`ShadowDefense` replays the
defenses that act on the reply a client sends, in the order the client's mods apply them (``update_defense_mod``
at position 40 first, then Flower's ``LocalDpMod`` at 20: ``fedsim.core.defense.base.Applier``), with the
server's own noise draws (the client's are unknown). The mechanisms are the project's pure functions
(``fedsim.core.defense.update``) and Flower's LocalDpMod rule (clip the update to C, add N(0, (C z)^2),
z = ``fedsim.core.accounting.local_dp_noise_multiplier``); Flower's own mod cannot run here (no ``flwr`` in
``attacks/``). Not simulated: DP-SGD (per-example clipping and noise inside training), central DP (noise on the
aggregate, not on the update the server intercepts) and SecAgg+ (no individual update to attack).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from fedsim.core.accounting import local_dp_noise_multiplier
from fedsim.core.defense.local_dp import LocalDp
from fedsim.core.defense.update import UpdateDefense
from fedsim.core.defense.base import DefenseRecord
from fedsim.core.defense.update import add_gaussian_noise, clip_update, defend_update


@dataclass(frozen=True)
class ShadowDefense:
    """The update defenses in force (``None``: that table is off)."""

    update: UpdateDefense | None = None
    local_dp: LocalDp | None = None

    @property
    def sparsifies(self) -> bool:
        """Top-k or random-k drops coordinates (the attack should then compare only the sent ones)."""
        return self.update is not None and bool(self.update.topk_ratio or self.update.randk_ratio)

    def describe(self) -> str:
        parts = []
        if self.update is not None:
            u = self.update
            parts += [f"{name} {v:g}" for name, v in (("update clip", u.clip_norm), ("update noise", u.noise_std),
                                                     ("top-k", u.topk_ratio), ("random-k", u.randk_ratio),
                                                     ("quantization bits", u.quant_bits)) if v]
        if self.local_dp is not None:
            parts.append(f"LocalDpMod clip {self.local_dp.clip_norm:g}, epsilon {self.local_dp.epsilon:g}")
        return " + ".join(parts)

    def on_delta(self, delta: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
        """The defended update ``W_after - W_before`` (noise from a generator seeded by ``seed``)."""
        gen = torch.Generator().manual_seed(int(seed))
        out = dict(delta)
        if self.update is not None:
            out = defend_update(out, self.update, gen)
        if self.local_dp is not None:
            c = float(self.local_dp.clip_norm)
            out = clip_update(out, c)
            out = add_gaussian_noise(out, c * local_dp_noise_multiplier(self.local_dp.epsilon, self.local_dp.delta),
                                     gen)
        return out

    def on_fake_gradient(self, grads: Sequence[torch.Tensor], *, lr: float, local_steps: int,
                         seed: int) -> list[torch.Tensor]:
        """The same, for an update in the fake-gradient form (W0 - WT) / (T lr) the attacks take."""
        scale = float(lr) * int(local_steps)
        delta = {str(i): -g.detach().double().cpu() * scale for i, g in enumerate(grads)}  # on CPU: seeded noise
        out = self.on_delta(delta, seed)
        return [(-out[str(i)] / scale).to(g) for i, g in enumerate(grads)]


def shadow_defense_from_record(defenses: Mapping[str, Any]) -> ShadowDefense | None:
    """The update defenses a capture's ``defenses`` record has in force, or ``None`` when there are none."""
    in_force = DefenseRecord.of(defenses).in_force
    update, local_dp = in_force.get("update"), in_force.get("local_dp")
    if update is None and local_dp is None:
        return None
    return ShadowDefense(update=update, local_dp=local_dp)
