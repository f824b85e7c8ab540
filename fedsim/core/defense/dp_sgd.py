"""``[defense.dp_sgd]``: per-example DP-SGD with Opacus (Abadi et al., CCS 2016), a training hook; its clients
report their epsilon, which the server writes as the round's privacy row.

Opacus' ``PrivacyEngine`` wraps the model (per-example gradients), clips each example's gradient to
``max_grad_norm``, adds Gaussian noise ``noise_multiplier * max_grad_norm`` and divides by the *expected* batch
size; batches are Poisson samples at rate ``q = B / n`` (n = partition size). The realised batch sizes are private:
they are not covered by the reported epsilon, so they never leave the client. :func:`released_examples` is what a
client reports as ``num-examples`` (FedAvg's weight, and the K the curious server's attack starts from).

torch and Opacus are imported where they are used: loading a config (``fedsim check``, the CLI's errors) reads
this module's schema and object without them.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fedsim.core import accounting
from fedsim.core.accounting import Spent
from fedsim.core.defense.base import TRAINING_HOOK, Applier, Defense, RoundRelease, Train, opt

if TYPE_CHECKING:
    import torch

    from fedsim.core.rows import PrivacyRow
    from fedsim.core.training import LocalResult


@dataclass(frozen=True)
class DpSgd:
    """``[defense.dp_sgd]``: per-example DP-SGD with Opacus (a training hook)."""

    enabled: bool = opt(False, doc="Opacus DP-SGD (Poisson sampling, RDP accountant) instead of plain SGD")
    noise_multiplier: float = opt(1.0, minimum=0.0, doc="Opacus noise multiplier")
    max_grad_norm: float = opt(1.0, minimum=1e-12, doc="Opacus per-example clipping norm")
    delta: float = opt(1e-5, minimum=1e-12, maximum=1.0, doc="delta for the reported epsilon")


class DpSgdDefense(Defense):
    """``[defense.dp_sgd]``: Opacus DP-SGD, a training hook (innermost: it replaces the optimiser, under the loss
    of ``[defense.training]``); its clients report their epsilon."""

    table, schema, dp, hides_train_loss = "dp_sgd", DpSgd, True, True

    def parts(self, t: DpSgd) -> list[tuple[str, str]]:
        return [(f"DP-SGD sigma {t.noise_multiplier:g}, clip {t.max_grad_norm:g}", "DP-SGD")]

    def appliers(self, t: DpSgd) -> tuple[Applier, ...]:
        return (Applier(TRAINING_HOOK, "dp_sgd", 50, hook=train_hook),)

    def check(self, cfg: Any, config_error: type[Exception]) -> None:
        mix = cfg.defense.training.mixup_alpha
        if mix > 0:  # training.mixup_step_loss: record i enters its own and perm^-1(i)'s clipped gradient
            raise config_error(
                f"defense.training.mixup_alpha: {mix:g} cannot be combined with defense.dp_sgd.enabled: mixup puts "
                "each record into two clipped per-example gradients (sensitivity 2 C, epsilon accounts C); set "
                "mixup_alpha = 0 (label_smoothing is fine)")
        check_dp_sgd_model(cfg, config_error)  # Opacus' ModuleValidator: BatchNorm refused before Flower starts

    def spent(self, cfg: Any, t: DpSgd, rounds: int, delta: float, client_examples: int | None) -> list[Spent]:
        if not client_examples:  # q = B / n needs the client's partition size
            return []
        tr = cfg.train
        q, steps = dp_sgd_steps(client_examples, tr.algorithm, tr.batch_size, tr.local_epochs, tr.max_local_steps)
        return [Spent("dp_sgd", accounting.dp_sgd_epsilon(t.noise_multiplier, q, steps * rounds, t.delta), t.delta,
                      releases=steps * rounds, note="record-level, per client",
                      relation=accounting.relation_of("dp_sgd", t.max_grad_norm))]

    def privacy_rows(self, cfg: Any, t: DpSgd, rnd: RoundRelease) -> list[PrivacyRow]:
        """The round's row: the largest epsilon any client reported (Opacus), none when none did."""
        from fedsim.core.rows import PRIVACY_FORMAT, PrivacyRow

        if not rnd.client_epsilons:
            return []
        r = accounting.relation_of("dp_sgd", t.max_grad_norm)
        return [PrivacyRow(round=rnd.server_round, epsilon=max(rnd.client_epsilons), delta=t.delta,
                           accountant="opacus-rdp", mechanism="dp_sgd", time=time.time(),
                           noise_multiplier=t.noise_multiplier, format=PRIVACY_FORMAT, unit=r.unit,
                           relation=r.relation, sensitivity=r.sensitivity)]


def train_hook(t: DpSgd, inner: Train) -> Train:
    """Opacus DP-SGD instead of plain SGD (``inner`` is not called), with the loss the outer hooks chose."""
    def train(model, x, y, *, step_loss=None, **kw):
        return dp_sgd_train(model, x, y, noise=t.noise_multiplier, max_grad_norm=t.max_grad_norm, delta=t.delta,
                            step_loss=step_loss, **kw)
    return train


def released_examples(algorithm: str, num_examples: int, batch_size: int) -> int:
    """``num-examples`` a client releases: FedSGD ``min(B, n)``, FedAvg the partition size ``n``.

    Both are functions of the partition size only, never of the examples that were drawn, so under DP-SGD's
    Poisson sampling they release nothing beyond ``n`` (which Opacus' accountant already treats as public:
    ``q = B / n``). For FedSGD ``min(B, n) = q * n`` is the expected batch size; for FedAvg ``n`` is the expected
    number of sample visits per epoch. Without DP-SGD these are exactly the examples used.
    """
    return max(1, min(batch_size, num_examples) if algorithm == "fedsgd" else num_examples)


def dp_sgd_steps(num_examples: int, algorithm: str, batch_size: int, epochs: int, max_steps: int
                 ) -> tuple[float, int]:
    """(Poisson sample rate, steps per round): FedSGD one step at rate B/n; FedAvg epochs * ceil(n/B) steps."""
    q = min(1.0, batch_size / num_examples)
    steps = 1 if algorithm == "fedsgd" else epochs * math.ceil(num_examples / batch_size)
    if algorithm != "fedsgd" and max_steps:
        steps = min(steps, max_steps)
    return q, steps


def rdp_epsilon(noise: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps by Opacus' RDP accountant."""
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(noise, sample_rate, steps)]
    return float(acc.get_epsilon(delta))


def dp_sgd_train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, algorithm: str, lr: float,
                 epochs: int, batch_size: int, seed: int, server_round: int, client_id: int, max_steps: int,
                 noise: float, max_grad_norm: float, delta: float, step_loss=None) -> tuple[LocalResult, dict]:
    """Per-example clipped, noised SGD (Opacus PrivacyEngine, Poisson sampling) on ``model`` in place.

    Returns the local result (its ground truth holds the realised Poisson batches: audit only) and privacy
    metrics: ``epsilon_round`` from the engine's RDP accountant for this round's steps, ``epsilon`` for all
    rounds so far assuming the client took part in every round (``fraction_train = 1``), both at ``delta``.
    """
    import torch
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    from fedsim.core import messages as K
    from fedsim.core.training import LocalResult, to_model
    from fedsim.core.types import GroundTruth

    q, steps = dp_sgd_steps(len(x), algorithm, batch_size, epochs, max_steps)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y, torch.arange(len(x))), batch_size=batch_size, generator=gen)
    engine = PrivacyEngine(accountant="rdp", secure_mode=False)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    private, optimizer, loader = engine.make_private(module=model, optimizer=optimizer, data_loader=loader,
                                                     noise_multiplier=noise, max_grad_norm=max_grad_norm,
                                                     poisson_sampling=True)
    losses, inputs, labels, taken = [], [], [], 0
    while taken < steps:
        for xb, yb, _ in loader:
            optimizer.zero_grad(set_to_none=True)
            if len(xb):
                xd, yd = to_model(model, xb), to_model(model, yb)  # run.device: the model's device and dtype
                loss = (torch.nn.functional.cross_entropy(private(xd), yd) if step_loss is None
                        else step_loss(private, xd, yd))
                loss.backward()
                losses.append(float(loss.detach()))
            optimizer.step()
            inputs.append(xb.detach().clone())
            labels.append(yb.detach().clone())
            taken += 1
            if taken >= steps:
                break
    private._close()
    truth = GroundTruth(server_round, client_id, tuple(inputs), tuple(labels))
    result = LocalResult(steps, sum(losses) / max(1, len(losses)), truth)
    privacy = {K.DP_SAMPLE_RATE: q, K.DP_STEPS: steps}
    if noise > 0:  # epsilon is infinite without noise; a MetricRecord must stay finite, so it is left out
        privacy[K.EPSILON_ROUND] = float(engine.accountant.get_epsilon(delta))
        privacy[K.EPSILON] = rdp_epsilon(noise, q, steps * server_round, delta)
    return result, privacy


# ---- at load: a model Opacus cannot train fails before Flower starts ---------------------------------------
@functools.lru_cache(maxsize=16)
def opacus_refusal(name: str, options: tuple[tuple[str, object], ...]) -> str | None:
    """Why Opacus' ``ModuleValidator.validate(model, strict=False)`` refuses the model, or None.

    The model is built once per process and option set on the ``meta`` device with a nominal 3x32x32 input and
    10 classes (no weights allocated, no data loaded): which layers a registered model has does not depend on
    the input shape. Opacus refuses BatchNorm (a sample's output depends on its batch peers, which per-example
    clipping cannot bound)."""
    import torch
    from opacus.validators import ModuleValidator

    from fedsim.core.models import build_model

    with torch.device("meta"):
        model = build_model(name, (3, 32, 32), 10, **dict(options))
    errors = ModuleValidator.validate(model, strict=False)
    if not errors:
        return None
    norms = [n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        more = ", ..." if len(norms) > 3 else ""
        return f"{len(norms)} BatchNorm layer(s) ({', '.join(norms[:3])}{more})"
    first = str(errors[0]).split(". ")[0].replace("\n", " ")
    return f"{len(errors)} module(s) Opacus cannot train ({type(errors[0]).__name__}: {first})"


def check_dp_sgd_model(cfg, config_error: type[Exception]) -> None:
    """DP-SGD on a model Opacus refuses (BatchNorm) is a one-line config error naming the model key."""
    from fedsim.core.models import model_options

    m = cfg.model
    reason = opacus_refusal(m.name, tuple(sorted(model_options(m).items())))
    if reason is None:
        return
    if m.name == "convnet" and m.batchnorm:
        key, hint = "model.batchnorm", "set model.batchnorm = false"
    else:
        key, hint = "model.name", "choose a model without BatchNorm (convnet, lenet5, fcn3, vgg16)"
    raise config_error(
        f"{key}: Opacus DP-SGD (defense.dp_sgd.enabled) cannot train model.name = {m.name!r}: it has {reason}, "
        f"which Opacus' ModuleValidator refuses; {hint}, or use opacus.validators.ModuleValidator.fix to swap "
        "BatchNorm for GroupNorm")


DP_SGD = DpSgdDefense()
