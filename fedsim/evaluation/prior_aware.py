"""ORACLE-PRIOR attack: the prior-aware attacker of Hayes, Mahloujifar & Balle (NeurIPS 2023), on a FedSGD update.

The DP bound (:mod:`fedsim.core.reconstruction_bound`) is for the strongest attacker: one that knows the prior (the
candidate set the target was drawn from) and everything in the training set except the target. This module is that
attacker, so that a sweep shows how close the bound is to what an attack reaches. It reads ground truth (the
client's partition, the realised batch), so it lives in the evaluation layer and every row and report line calls it
an ORACLE-PRIOR attack: no curious server has this knowledge.

The game, per update and per target (Hayes et al., Sec. 3; adapted to fedsim's FedSGD step):

* the client's partition ``P`` (n examples) is the training set; each ``j`` in ``P`` is a target in turn and the
  others ``D- = P \\ {j}`` are known to the attacker, *including which of them the step's Poisson sample drew*
  (a stronger attacker than the paper's; the guarantee still holds: each example's inclusion is independent);
* the candidate set is ``j`` plus ``n - 1`` decoys: test-split images (never trained on), drawn for each target on
  its own from a pool of ``max(1024, 8 n)`` (so that the targets' outcomes are nearly independent trials);
  kappa = 1 / n. Under the assumption that the test split and the partition are draws from the same
  distribution, ``j`` is exchangeable with the decoys, so the success rate over targets is the game's success
  with the target drawn uniformly from the candidates (the ReRo game that the bound covers);
* the release: with DP-SGD (Opacus, one step, Poisson rate q, noise multiplier sigma, clip C) the update is
  ``-lr (sum_{i in B} clip(g_i) + N(0, sigma^2 C^2 I)) / b`` with ``b`` Opacus' expected batch size
  (``int(n / ceil(n / B))``), so ``s = (w_before - w_after) b / lr`` is the noisy sum of clipped gradients;
  without DP-SGD, ``s`` is the plain sum of the batch's gradients (no clipping, no noise);
* the attacker subtracts the known examples' clipped gradients, ``r_j = s - sum_{i in B, i != j} clip(g_i)``,
  and picks the candidate ``c`` of the highest Gaussian likelihood, ``argmax_c <r_j, G_c> - ||G_c||^2 / 2``
  (``G_c`` the candidate's clipped gradient at ``w_before``): the Bayes-optimal guess under a uniform prior,
  since the target's inclusion term (1 - q) is the same for every candidate (Hayes et al., Alg. 1 uses the
  inner product; with every gradient clipped to norm C the two agree). Ties (a target outside the batch with no
  noise) are broken uniformly at random (seeded).

Assumptions stated: FedSGD only (one local step, ``w_before`` is the model the step ran at; FedAvg's
intermediate models are not released); the per-example gradients are recomputed with ``torch.func`` and equal
Opacus' up to float round-off (``noise_measured`` reports ``||s - sum_B G|| / (C sqrt(d))``, which is sigma when
they do); the bound to compare with is the whole run's so far (steps x round, every round taken part in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from fedsim.core.defense.base import DefenseRecord

ORACLE = "oracle-prior"
LABEL = "ORACLE-PRIOR (knows the candidate set, the other training examples and the batch)"
MAX_TARGETS = 2000  # the partition is capped like the re-identification pool (fedsim.evaluation.identify)
CHUNK = 256  # per-example gradients at a time (memory)
DECOY_POOL = 1024  # test images the decoys are drawn from (at least 8 per target), each target its own n - 1


def per_example_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float | None
                          ) -> torch.Tensor:
    """``[n, d]`` per-example cross-entropy gradients of ``model``'s parameters (named order), each scaled by
    Opacus' factor ``min(1, C / (||g|| + 1e-6))`` when ``clip`` is given; on the model's device and dtype."""
    from torch.func import functional_call, grad, vmap

    p0 = next(model.parameters())
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss(p, xi, yi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return torch.nn.functional.cross_entropy(out, yi.unsqueeze(0))

    per = vmap(grad(loss), in_dims=(None, 0, 0))
    rows = []
    for i in range(0, len(x), CHUNK):
        xb = x[i:i + CHUNK].to(p0.device, p0.dtype)
        yb = y[i:i + CHUNK].to(p0.device).long()
        g = per(params, xb, yb)
        flat = torch.cat([g[k].reshape(len(xb), -1) for k in params], 1)
        if clip is not None:
            flat = flat * (clip / (flat.norm(dim=1, keepdim=True) + 1e-6)).clamp(max=1.0)
        rows.append(flat)
    return torch.cat(rows) if rows else torch.zeros(0, sum(v.numel() for v in params.values()), device=p0.device)


def released_sum(model: torch.nn.Module, before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor],
                 lr: float, scale: float) -> torch.Tensor:
    """``(w_before - w_after) * scale / lr`` flattened in the model's parameter order: the summed (noisy, clipped)
    gradient one SGD step released, ``scale`` the batch size it was divided by."""
    p0 = next(model.parameters())
    parts = [(before[k].to(p0.device, p0.dtype) - after[k].to(p0.device, p0.dtype)).reshape(-1)
             for k, _ in model.named_parameters()]
    return torch.cat(parts) * (scale / lr)


@dataclass(frozen=True)
class OracleResult:
    """Per target: its guess was right (``hits``); how many targets were in the batch; the noise measured."""

    hits: torch.Tensor  # [n] bool
    in_batch: int
    candidates: int
    noise_measured: float | None


def prior_aware_guess(targets: torch.Tensor, decoys: torch.Tensor, released: torch.Tensor, in_batch: torch.Tensor,
                      clip: float | None, seed: int = 0, subsets: torch.Tensor | None = None) -> OracleResult:
    """The prior-aware attack on one step's release. ``targets`` [n, d]: the training set's (clipped) gradients;
    ``decoys`` [P, d]: the decoy pool's gradients; ``released`` [d]: the summed release; ``in_batch`` [n] bool:
    which training examples the step drew (known to the attacker for every example but the target);
    ``subsets`` [n, K-1]: the decoys (pool indices) of each target, every decoy when None. For target ``j`` the
    candidates are ``j`` and its decoys; returns whether it picked ``j``. Each target's own decoy draw keeps the
    targets' outcomes (nearly) independent, as the Clopper-Pearson interval of their pooled rate assumes; a
    shared decoy set would make every target outside the batch compete with the same best decoy."""
    t, dg = targets.double(), decoys.double()
    e = released.double() - t[in_batch].sum(0)  # the release minus every batch member: noise (+ round-off)
    base_t = t @ e - 0.5 * (t * t).sum(1)  # score of each candidate against the residual of a target outside B
    base_d = dg @ e - 0.5 * (dg * dg).sum(1)
    own = base_t + in_batch.double() * (t * t).sum(1)  # candidate j for target j
    cross = base_d.unsqueeze(0) + in_batch.double().unsqueeze(1) * (t @ dg.T)  # [n, P]
    if subsets is not None:
        cross = cross.gather(1, subsets.to(cross.device))
    scores = torch.cat([own.unsqueeze(1), cross], 1)  # column 0: the target itself
    top = scores.max(1, keepdim=True).values
    tol = 1e-9 * top.abs().clamp(min=1.0)
    ties = scores >= top - tol
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    pick = (torch.rand(scores.shape, generator=gen, dtype=torch.float64).to(scores.device) * ties).argmax(1)
    d = released.numel()
    noise = (float(e.norm()) / (clip * math.sqrt(d))) if clip else None
    return OracleResult(hits=(pick == 0).cpu(), in_batch=int(in_batch.sum()), candidates=scores.shape[1],
                        noise_measured=noise)


def membership(pool: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """[len(pool)] bool: which pool examples are in ``batch`` (exact copies, float round-off aside)."""
    if len(batch) == 0:
        return torch.zeros(len(pool), dtype=torch.bool)
    d = torch.cdist(pool.flatten(1).double().cpu(), batch.flatten(1).double().cpu())
    return d.min(1).values < 1e-6


def dp_sgd_setting(defenses: Mapping[str, Any]) -> tuple[float, float] | None:
    """(noise multiplier, clip norm) of the update's DP-SGD (its recorded ``defenses``), None when DP-SGD was off."""
    dp = DefenseRecord.of(defenses).in_force.get("dp_sgd")
    return None if dp is None else (float(dp.noise_multiplier), float(dp.max_grad_norm))


def oracle_prior_row(cfg, update, truth, run_dir: str | Path):
    """The ``oracle_prior`` row of one FedSGD update with ground truth (``fedsim.core.rows.OraclePriorRow``);
    a skipped row when the update is not a single step or has no truth."""
    import time

    from fedsim.core.defense.dp_sgd import dp_sgd_steps
    from fedsim.core.experiment import client_data, make_model, test_data
    from fedsim.core.rows import OraclePriorRow, SkippedRow
    from fedsim.evaluation.bounds import mechanism_of

    base = dict(round=update.server_round, client=update.client_id, method=ORACLE)
    if truth is None or update.cohort:
        return SkippedRow(reason="oracle-prior: needs one client's ground truth (none recorded, or a secure "
                          "aggregate)", **base)
    if update.algorithm != "fedsgd" or len(truth.inputs) != 1:
        return SkippedRow(reason="oracle-prior: FedSGD only (one step at the released weights)", **base)
    start = time.perf_counter()
    model = make_model(cfg)
    model.load_state_dict({**dict(update.weights_before), **dict(update.buffers_before)}, strict=False)
    model.train()
    x, y = client_data(cfg, update.client_id, cfg.run.num_clients)
    x, y = x[:MAX_TARGETS], y[:MAX_TARGETS]
    n = len(x)
    dp = dp_sgd_setting(update.defenses)
    if dp is not None:  # Opacus divides by its expected batch size int(n * q), q = 1 / ceil(n / B)
        scale, clip = float(int(n * (1.0 / math.ceil(n / cfg.train.batch_size)))), dp[1]
    else:  # FedSGD without DP-SGD: the mean over the batch it drew
        scale, clip = float(len(truth.inputs[0])), None
    in_batch = membership(x, truth.inputs[0])
    test_x, test_y = test_data(cfg)  # never trained on: the decoy pool
    gen = torch.Generator().manual_seed(int(cfg.run.seed) * 100003 + update.server_round * 1009 + update.client_id)
    pool = torch.randperm(len(test_x), generator=gen)[:min(len(test_x), max(DECOY_POOL, 8 * n))]
    if len(pool) < n - 1:
        raise ValueError(f"oracle-prior: {len(pool)} test images, fewer than the {n - 1} decoys a target needs")
    decoys_x, decoys_y = test_x[pool], torch.as_tensor(test_y)[pool]
    subsets = torch.stack([torch.randperm(len(pool), generator=gen)[:n - 1] for _ in range(n)])  # per target
    g_t = per_example_gradients(model, x, y, clip)
    g_d = per_example_gradients(model, decoys_x, decoys_y, clip)
    s = released_sum(model, update.weights_before, update.weights_after, update.lr, scale)
    res = prior_aware_guess(g_t, g_d, s, in_batch.to(g_t.device), clip, seed=update.server_round * 7919 + n,
                            subsets=subsets)
    hits = int(res.hits.sum())
    kappa = 1.0 / res.candidates
    mech = mechanism_of(cfg, update, n)
    bound = None
    if mech is not None:
        from fedsim.core.reconstruction_bound import reconstruction_bound

        bound = reconstruction_bound(mech, kappa)
    q, _ = dp_sgd_steps(n, "fedsgd", cfg.train.batch_size, 1, 0)
    return OraclePriorRow(
        ok=True, seconds=round(time.perf_counter() - start, 4), algorithm=update.algorithm,
        local_steps=update.local_steps, batch_size=update.batch_size, num_examples=update.num_examples,
        defenses=dict(update.defenses), targets=n, hits=hits, success=hits / n, kappa=kappa,
        candidates=res.candidates, in_batch=res.in_batch, sample_rate=q,
        noise_multiplier=dp[0] if dp is not None else None, noise_measured=res.noise_measured,
        bound=bound, bound_mechanism=mech.describe() if mech is not None else "no DP mechanism (no bound)",
        oracle=LABEL, **base)
