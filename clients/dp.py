"""Client-side defenses that need Flower or Opacus: the configured mod chain and DP-SGD local training.

Mods (``ClientApp(mods=[defense_mod])``): the ClientApp object is built at import time, before the run config is
known, so :func:`defense_mod` reads ``[defense]`` from ``context.run_config`` on every TRAIN message and runs
Flower's own mods when they are switched on (outermost first):

    secagg masking (ours)  ->  LocalDpMod (Flower)  ->  fixedclipping_mod (Flower, central_dp = "client")  ->  train()

Flower's ``LocalDpMod`` and ``fixedclipping_mod`` are Message-API mods in 1.41 and are used as they are.
Flower's ``secaggplus_mod`` is not: it converts the reply with ``compat.recorddict_to_fitres`` (legacy FitRes keys)
and its server half, ``SecAggPlusWorkflow``, drives a legacy ``flwr.server.strategy`` through ``LegacyContext``
(``configure_fit``/``aggregate_fit``), so it cannot run under our Message-API ``Strategy.start``. We mask with the
additive pairwise masks of ``fedsim.defenses`` instead (see there for what is simulated).
"""

from __future__ import annotations

import math

import torch
from flwr.app import ArrayRecord, Context, Message
from flwr.app.message_type import MessageType
from flwr.clientapp.mod import LocalDpMod, fixedclipping_mod

from fedsim.config import DefenseSection, from_flat
from fedsim.defenses import mask_weights
from fedsim.training import LocalResult
from fedsim.types import GroundTruth


def secagg_secret(seed: int) -> str:
    """The cohort secret of the simulated key agreement (the server-side code never calls this)."""
    return f"fedsim-secagg-cohort-{seed}"


def secagg_mod(msg: Message, ctxt: Context, call_next) -> Message:
    cfg = from_flat(ctxt.run_config)
    out = call_next(msg, ctxt)
    if out.has_error():
        return out
    pid, num_parts = int(ctxt.node_config["partition-id"]), int(ctxt.node_config["num-partitions"])
    weight = float(out.content["metrics"]["num-examples"])
    state = out.content["arrays"].to_torch_state_dict()
    floats = {k: v for k, v in state.items() if v.is_floating_point()}
    masked = mask_weights(floats, weight, pid, list(range(num_parts)), secret=secagg_secret(cfg.run.seed),
                          server_round=int(msg.content["config"]["server-round"]),
                          scale=cfg.defense.secagg_mask_scale)
    state.update(masked)
    out.content["arrays"] = ArrayRecord(state)
    return out


def mod_chain(d: DefenseSection) -> list:
    chain = []
    if d.secagg:
        chain.append(secagg_mod)
    if d.local_dp:
        chain.append(LocalDpMod(clipping_norm=d.local_dp_clip, sensitivity=d.local_dp_clip,
                                epsilon=d.local_dp_epsilon, delta=d.local_dp_delta))
    if d.central_dp == "client":
        chain.append(fixedclipping_mod)
    return chain


def defense_mod(msg: Message, ctxt: Context, call_next) -> Message:
    """Run the configured mods (outermost first) around the ClientApp's train function."""
    if msg.metadata.message_type != MessageType.TRAIN:
        return call_next(msg, ctxt)
    chain = mod_chain(from_flat(ctxt.run_config).defense)

    def run(i: int, m: Message, c: Context) -> Message:
        if i == len(chain):
            return call_next(m, c)
        return chain[i](m, c, lambda m2, c2: run(i + 1, m2, c2))

    return run(0, msg, ctxt)


# ---- DP-SGD with Opacus ------------------------------------------------------------------------------------
def dp_sgd_steps(num_examples: int, algorithm: str, batch_size: int, epochs: int, max_steps: int
                 ) -> tuple[float, int]:
    """(Poisson sample rate, steps per round): FedSGD one step at rate B/n; FedAvg epochs * ceil(n/B) steps."""
    q = min(1.0, batch_size / num_examples)
    steps = 1 if algorithm == "fedsgd" else epochs * math.ceil(num_examples / batch_size)
    if algorithm != "fedsgd" and max_steps:
        steps = min(steps, max_steps)
    return q, steps


def rdp_epsilon(noise: float, sample_rate: float, steps: int, delta: float) -> float:
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(noise, sample_rate, steps)]
    return float(acc.get_epsilon(delta))


def dp_sgd_train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, algorithm: str, lr: float,
                 epochs: int, batch_size: int, seed: int, server_round: int, client_id: int, max_steps: int,
                 noise: float, max_grad_norm: float, delta: float, step_loss=None) -> tuple[LocalResult, dict]:
    """Per-example clipped, noised SGD (Opacus PrivacyEngine, Poisson sampling) on ``model`` in place.

    Returns the local result and privacy metrics: ``epsilon_round`` from the engine's RDP accountant for this
    round's steps, ``epsilon`` for all rounds so far assuming the client took part in every round
    (``fraction_train = 1``), both at ``delta``.
    """
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

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
                loss = (torch.nn.functional.cross_entropy(private(xb), yb) if step_loss is None
                        else step_loss(private, xb, yb))
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
    privacy = {"dp_sample_rate": q, "dp_steps": steps}
    if noise > 0:  # epsilon is infinite without noise; a MetricRecord must stay finite, so it is left out
        privacy["epsilon_round"] = float(engine.accountant.get_epsilon(delta))
        privacy["epsilon"] = rdp_epsilon(noise, q, steps * server_round, delta)
    return result, privacy


# ---- what train() calls --------------------------------------------------------------------------------------
def update_defenses(d: DefenseSection):
    from fedsim.defenses import UpdateDefenses

    return UpdateDefenses(clip_norm=d.clip_norm, noise_std=d.noise_std, topk_ratio=d.topk_ratio,
                          randk_ratio=d.randk_ratio, sparsify_scope=d.sparsify_scope, quant_bits=d.quant_bits)


def step_loss_for(d: DefenseSection, seed: int):
    """Label smoothing / mixup loss for local training, or None (plain cross-entropy, bit-identical)."""
    from fedsim.defenses import mixup_step_loss, smoothed_step_loss

    if d.mixup_alpha > 0:
        return mixup_step_loss(d.mixup_alpha, seed, d.label_smoothing)
    if d.label_smoothing > 0:
        return smoothed_step_loss(d.label_smoothing)
    return None


def train_defended(d: DefenseSection, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, **kw
                   ) -> tuple[LocalResult, dict[str, torch.Tensor], dict]:
    """Local training with the configured defenses: (result, state dict to send, extra metrics).

    DP-SGD (Opacus) replaces plain SGD; then the update-level defenses (clip, noise, top-k/rand-k, quantization)
    are applied to ``W_after - W_before`` of the floating-point tensors. Flower mods act later, on the reply.
    """
    from fedsim.defenses import defend_weights
    from fedsim.training import train_locally

    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    step_loss = step_loss_for(d, kw["seed"])
    extra: dict = {}
    if d.dp_sgd:
        result, extra = dp_sgd_train(model, x, y, noise=d.dp_sgd_noise, max_grad_norm=d.dp_sgd_max_grad_norm,
                                     delta=d.dp_sgd_delta, step_loss=step_loss, **kw)
    else:
        result = train_locally(model, x, y, step_loss=step_loss, **kw)
    state = model.state_dict()
    ud = update_defenses(d)
    if ud.active:
        floats = {k: v for k, v in state.items() if v.is_floating_point()}
        state = {**state, **defend_weights(before, floats, ud, seed=kw["seed"] + 7919)}
    return result, state, extra
