"""SPEAR and SPEAR++: exact recovery of a whole batch from the gradient of a linear layer followed by ReLU.

Setting (Dimitrov, Baader, Mueller, Vechev, "SPEAR: Exact Gradient Inversion of Batches in Federated Learning",
NeurIPS 2024, arXiv 2403.03945, Sec. 3-4): the first trainable layer is ``z = W x + b`` (W: m x n) followed by a
ReLU. With the batch X (n x B, one column per sample) and D = dL/dZ (m x B), dL/dW = D X^T has rank B and
dL/db = D 1. ReLU zeroes D wherever z <= 0, so every column of D is sparse (about half its entries on an
untrained layer). Any rank-B factorisation dL/dW = L R (L: m x B, R: B x n) has D = L Q and X^T = Q^-1 R for one
invertible B x B matrix Q, whose columns are the directions q that make L q sparse.

``spear`` (the paper's Alg. 1):
1. L, R from the truncated SVD of dL/dW; B from its numerical rank (or ``batch_size=`` / ``num_samples=``).
2. Sampling: a subset A of B-1 rows of L; q spans the null space of L_A. When A lies in the zero set of one
   column of D, q is that column's direction (probability about 2^-(B-1) per column: exponential in B).
3. Sparsity filter: keep q whose L q has at least ``tau`` of the live rows at (near) zero; deduplicate.
4. Greedy selection of B directions, sparsest first and linearly independent, then swaps that raise the
   sparsity-matching coefficient: the share of entries on which the ReLU pattern the recovered batch implies
   (W x + b <= 0, computable by the server, which knows W and b) agrees with the zeros of the recovered D.
5. Scale and sign from the bias gradient: L Q' s = dL/db for the unit-norm directions Q', then X^T = Q^-1 R.

``spear++`` (Bakarsky, Dimitrov, Baader, Vechev, "SPEAR++: Scaling Gradient Inversion via Sparsely-Used
Dictionary Learning", 2025, arXiv 2510.24200) replaces steps 2-3 by sparsely-used dictionary learning, ER-SpUD
(Spielman, Wang, Wright, COLT 2012): L^T = Q^-T D^T is a complete dictionary times a sparse matrix, and for a
constraint row l_j of L, argmin ||L q||_1 s.t. l_j^T q = 1 is (for sparse enough D) a column of D active at row j.
Solved for many rows at once by ADMM on the gradients' device (``solver="admm"``, default) or one linear
program per row with scipy's HiGHS (``solver="linprog"``). Steps 4-5 as in spear.

Own code, written from the papers' text (no public implementation is a dependency here). Additions of ours,
kept because they only use what the server has: every candidate is *polished* (q re-solved as the least-squares
null vector of L on its whole estimated zero set, twice), which makes a found direction exact to rounding and
averages noise (DP) over hundreds of rows instead of B-1; zero rows of dL/dW (units dead for the whole batch) are
left out of sampling and counting; spear++ takes its constraint rows preferably where the directions found so far
are all zero (they cannot be returned again there); the zero threshold follows the noise level read off the
singular values beyond rank B. Both run in the gradients' dtype on their device (the LP solver on the host).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from fedsim.core.errors import AttackNotApplicable

#: modules that may sit between the model input and the first linear layer (they do not change the values)
PASS_THROUGH = (nn.Flatten, nn.Identity, nn.Dropout)
SOLVERS = ("admm", "linprog")


def first_linear_relu(model: nn.Module, input_shape: Sequence[int], method: str = "spear"
                      ) -> tuple[int, int, nn.Linear]:
    """Indices (in ``list(model.parameters())``) of the weight and bias of the model's first trainable layer, which
    must be an ``nn.Linear`` with a bias, fed the (flattened) input and followed by ``nn.ReLU``; otherwise
    ``AttackNotApplicable`` saying why. Leaf modules are read in registration order (as ``analytic-fc`` does)."""
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    first = next((i for i, m in enumerate(leaves) if any(True for _ in m.parameters(recurse=False))), None)
    if first is None:
        raise AttackNotApplicable(f"{method}: the model has no trainable layer")
    layer = leaves[first]
    if not isinstance(layer, nn.Linear) or layer.bias is None:
        raise AttackNotApplicable(f"{method} needs a model whose first trainable layer is nn.Linear with a bias "
                                  f"followed by ReLU (got {type(layer).__name__})")
    before = [type(m).__name__ for m in leaves[:first] if not isinstance(m, PASS_THROUGH)]
    if before:
        raise AttackNotApplicable(f"{method}: {', '.join(before)} transforms the input before the first linear layer")
    after = leaves[first + 1] if first + 1 < len(leaves) else None
    if type(after) is not nn.ReLU:
        raise AttackNotApplicable(f"{method} needs ReLU after the first linear layer (got "
                                  f"{type(after).__name__ if after is not None else 'nothing'})")
    if layer.in_features != math.prod(int(s) for s in input_shape):
        raise AttackNotApplicable(f"{method}: the first linear layer takes {layer.in_features} features, the input "
                                  f"{tuple(input_shape)} has {math.prod(int(s) for s in input_shape)}")
    ids = {id(p): i for i, p in enumerate(model.parameters())}
    return ids[id(layer.weight)], ids[id(layer.bias)], layer


@dataclass(frozen=True)
class LowRank:
    """dL/dW ~ L R at rank B: L = U_B S_B (m x B), R = V_B^T (B x n); ``noise``: per-entry noise level of dL/dW
    estimated from the first discarded singular value (0 for an exact rank-B gradient up to rounding);
    ``live``: rows of L that are not zero (units active for some sample)."""

    L: torch.Tensor
    R: torch.Tensor
    noise: float
    live: torch.Tensor
    rank: int


def numerical_rank(s: torch.Tensor, rtol: float | None = None) -> int:
    """Singular values above ``rtol`` x the largest (default: 1000 x machine epsilon of their dtype)."""
    if rtol is None:
        rtol = 1e3 * torch.finfo(s.dtype).eps
    return int((s > rtol * s[0]).sum()) if s.numel() and float(s[0]) > 0 else 0


def low_rank(g_w: torch.Tensor, batch: int | None, num_samples: int | None) -> LowRank:
    """The rank-B factorisation of the weight gradient (step 1). B: ``batch`` when given, else the numerical rank,
    capped by ``num_samples`` (the sample count the server knows; under noise the rank is full)."""
    u, s, vh = torch.linalg.svd(g_w, full_matrices=False)
    rank = numerical_rank(s)
    b = int(batch) if batch else (min(rank, int(num_samples)) if num_samples else rank)
    if b < 1 or b > s.numel():
        raise AttackNotApplicable(f"spear: batch size {b} is not between 1 and {s.numel()} (rank of dL/dW: {rank})")
    m, n = g_w.shape
    noise = float(s[b]) / (math.sqrt(m) + math.sqrt(n)) if b < s.numel() else 0.0
    L = u[:, :b] * s[:b]
    eps = torch.finfo(g_w.dtype).eps
    row = L.norm(dim=1)
    live = row > max(3.0 * noise * math.sqrt(b), 100 * eps * float(row.max()))
    return LowRank(L=L, R=vh[:b], noise=noise, live=live, rank=rank)


def zero_mask(lr: LowRank, V: torch.Tensor) -> torch.Tensor:
    """Near-zero entries of the columns of V = L q (q of unit norm): below 4x the noise level and 1e3 machine
    epsilons of the column's largest entry; dead rows are never counted."""
    eps = torch.finfo(V.dtype).eps
    thr = torch.clamp(1e3 * eps * V.abs().amax(0, keepdim=True), min=4.0 * lr.noise)
    return (V.abs() <= thr) & lr.live[:, None]


def polish(lr: LowRank, q: torch.Tensor, rounds: int = 2) -> torch.Tensor:
    """Re-solve each candidate (columns of q, B x K) as the least-squares null vector of L on its estimated zero
    set (smallest eigenvector of L_Z^T L_Z): exact to rounding for a true direction, noise averaged over the set."""
    L = lr.L
    for _ in range(rounds):
        mask = zero_mask(lr, L @ q).to(L.dtype)                       # m x K
        gram = torch.einsum("mk,ma,mb->kab", mask, L, L)               # K x B x B
        _, vecs = torch.linalg.eigh(gram)
        q = vecs[:, :, 0].T                                           # B x K
    return q / q.norm(dim=0, keepdim=True)


@dataclass
class Pool:
    """Candidate directions (unit columns, B x K) with their zero counts, deduplicated by zero pattern."""

    q: torch.Tensor
    zeros: torch.Tensor
    keys: set

    @classmethod
    def empty(cls, lr: LowRank) -> "Pool":
        return cls(lr.L.new_zeros((lr.L.shape[1], 0)), torch.zeros(0, dtype=torch.long, device=lr.L.device), set())

    def add(self, lr: LowRank, q: torch.Tensor, min_zeros: int) -> None:
        if q.shape[1] == 0:
            return
        q = polish(lr, q)
        mask = zero_mask(lr, lr.L @ q)
        zeros = mask.sum(0)
        keep = zeros >= min_zeros
        q, mask, zeros = q[:, keep], mask[:, keep], zeros[keep]
        packed = mask.T.cpu().numpy()
        for j in range(q.shape[1]):
            key = packed[j].tobytes()
            if key in self.keys:
                continue
            self.keys.add(key)
            self.q = torch.cat([self.q, q[:, j:j + 1]], 1)
            self.zeros = torch.cat([self.zeros, zeros[j:j + 1]])


@dataclass(frozen=True)
class Selection:
    """B chosen directions and the batch they give: ``x`` (B x n), ``match`` (sparsity-matching coefficient of the
    worst sample)."""

    q: torch.Tensor
    x: torch.Tensor
    match: float


def recover(lr: LowRank, q: torch.Tensor, g_b: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 5 and the matching coefficient: scales s from L Q' s = dL/db, X^T = diag(1/s) Q'^-1 R; per sample, the
    share of live rows where (W x + b <= 0) agrees with (L Q' is zero). Returns (X^T, per-sample match)."""
    d = lr.L @ q                                                     # m x B, columns of D up to scale
    s = torch.linalg.lstsq(d, g_b[:, None]).solution[:, 0]           # B
    s = torch.where(s.abs() > 0, s, torch.full_like(s, torch.finfo(s.dtype).eps))
    xt = torch.linalg.solve(q, lr.R) / s[:, None]                    # B x n
    inactive = (weight @ xt.T + bias[:, None]) <= 0                  # m x B
    agree = (inactive == zero_mask(lr, d))[lr.live]
    if agree.numel() == 0:
        return xt, d.new_zeros(d.shape[1])
    return xt, agree.to(d.dtype).mean(0)


def independent(chosen: torch.Tensor, c: torch.Tensor, tol: float = 1e-3) -> bool:
    """``c`` (unit) keeps a residual above ``tol`` after projection on the span of ``chosen`` (B x k)."""
    if chosen.shape[1] == 0:
        return True
    basis, _ = torch.linalg.qr(chosen)
    return float((c - basis @ (basis.T @ c)).norm()) > tol


def greedy_select(lr: LowRank, pool: Pool, g_b: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                  swap_candidates: int = 32) -> Selection | None:
    """Step 4: the sparsest independent B candidates; then, while it helps, the sample whose ReLU pattern agrees
    least is swapped for the spare candidate (of the next ``swap_candidates``) that raises the worst agreement
    most. None when fewer than B candidates are independent."""
    b = lr.L.shape[1]
    order = torch.argsort(pool.zeros, descending=True, stable=True).tolist()
    chosen: list[int] = []
    for j in order:
        if independent(pool.q[:, chosen], pool.q[:, j]):
            chosen.append(j)
            if len(chosen) == b:
                break
    if len(chosen) < b:
        return None
    x, per = recover(lr, pool.q[:, chosen], g_b, weight, bias)
    spare = [j for j in order if j not in chosen][:swap_candidates]
    for _ in range(b):
        match = float(per.min())
        if match >= 1.0 or not spare:
            break
        pos = int(per.argmin())
        rest = chosen[:pos] + chosen[pos + 1:]
        best = None
        for j in spare:
            if not independent(pool.q[:, rest], pool.q[:, j]):
                continue
            trial = rest[:pos] + [j] + rest[pos:]
            tx, tper = recover(lr, pool.q[:, trial], g_b, weight, bias)
            if float(tper.min()) > (best[0] if best else match) + 1e-9:
                best = (float(tper.min()), j, tx, tper)
        if best is None:
            break
        _, j, x, per = best
        spare.remove(j)
        spare.append(chosen[pos])
        chosen[pos] = j
    return Selection(pool.q[:, chosen], x, float(per.min()))


def _keep_better(best: Selection | None, sel: Selection | None) -> Selection | None:
    """The selection with the higher match (the earlier one on a tie)."""
    return sel if sel is not None and (best is None or sel.match > best.match) else best


def _done(sel: Selection | None, noise: float, target: float) -> bool:
    return sel is not None and (sel.match >= 1.0 - 1e-12 or (noise > 0 and sel.match >= target))


def sample_directions(lr: LowRank, count: int, gen: torch.Generator) -> torch.Tensor:
    """Step 2: ``count`` null vectors of random (B-1)-row submatrices of the live rows of L (B x count)."""
    L = lr.L[lr.live]
    b = L.shape[1]
    if b == 1:
        return L.new_ones((1, count))
    rows = torch.randint(0, L.shape[0], (count, b - 1), generator=gen, device=L.device)
    sub = L[rows]                                                    # count x (B-1) x B
    full, _ = torch.linalg.qr(sub.transpose(1, 2), mode="complete")  # count x B x B
    return full[:, :, -1].T                                          # orthogonal to the B-1 rows


def spear_directions(lr: LowRank, g_b, weight, bias, *, tau: float, max_samples: int, chunk: int,
                     gen: torch.Generator, match_target: float, deadline: float) -> tuple[Selection | None, int]:
    """Steps 2-4 of spear: sample in chunks until a selection matches the ReLU pattern exactly (or ``match_target``
    under noise), or ``max_samples`` / the time limit is reached. Returns the best selection and samples drawn."""
    pool = Pool.empty(lr)
    live = int(lr.live.sum())
    min_zeros = max(lr.L.shape[1], int(math.ceil(tau * live)))
    drawn, best, size = 0, None, 0
    while drawn < max_samples and time.perf_counter() < deadline:
        n = min(chunk, max_samples - drawn, max(256, 2 ** (lr.L.shape[1] + 2)))  # small B: small chunks
        q = sample_directions(lr, n, gen)
        drawn += n
        L = lr.L
        zeros = zero_mask(lr, L @ q).sum(0)
        pool.add(lr, q[:, zeros >= min_zeros], min_zeros)
        if pool.q.shape[1] >= lr.L.shape[1] and pool.q.shape[1] != size:
            size = pool.q.shape[1]
            best = _keep_better(best, greedy_select(lr, pool, g_b, weight, bias))
            if _done(best, lr.noise, match_target):
                break
    return best, drawn


def _admm_l1(U: torch.Tensor, r: torch.Tensor, iters: int, rho: float) -> torch.Tensor:
    """min ||U p||_1 s.t. r_k^T p = 1 for every column r_k of r (B x K), U with orthonormal columns, by ADMM on
    z = U p (Boyd et al. 2011, Sec. 6); returns p (B x K)."""
    rn = r / r.pow(2).sum(0, keepdim=True)
    p = rn.clone()
    z = U @ p
    u = torch.zeros_like(z)
    for _ in range(iters):
        p0 = U.T @ (z - u)
        p = p0 + (1.0 - (r * p0).sum(0, keepdim=True)) * rn
        up = U @ p
        v = up + u
        z = torch.sign(v) * torch.clamp(v.abs() - 1.0 / rho, min=0.0)
        u = v - z
    return p


def _linprog_l1(L: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The same problems as ``_admm_l1``, one HiGHS linear program each (variables q, t >= |L q|; host)."""
    import numpy as np
    from scipy.optimize import linprog
    from scipy.sparse import bmat, csr_matrix, identity

    A = L.detach().cpu().double().numpy()
    m, b = A.shape
    eye = identity(m, format="csr")
    ub = bmat([[csr_matrix(A), -eye], [csr_matrix(-A), -eye]], format="csr")
    c = np.concatenate([np.zeros(b), np.ones(m)])
    out = []
    for k in range(r.shape[1]):
        eq = np.concatenate([r[:, k].detach().cpu().double().numpy(), np.zeros(m)])[None]
        res = linprog(c, A_ub=ub, b_ub=np.zeros(2 * m), A_eq=eq, b_eq=[1.0],
                      bounds=[(None, None)] * b + [(0, None)] * m, method="highs")
        out.append(res.x[:b] if res.status == 0 else np.zeros(b))
    return torch.as_tensor(np.stack(out, 1), dtype=L.dtype, device=L.device)


def refine_zeros(U: torch.Tensor, p: torch.Tensor, zero_share: float, rounds: int = 10) -> torch.Tensor:
    """Hard-thresholding refinement (ours): the k smallest entries of |U p| are taken as the zero set and p re-solved
    as the null vector of U there, ``rounds`` times, for k = B-1 (the sampled set of spear, here chosen by the
    l1 solution), 2B and ``zero_share`` of the rows. Returns the candidates of every k side by side (B x 3K)."""
    b, m = U.shape[1], U.shape[0]
    out = []
    for k in sorted({max(1, b - 1), min(m - 1, 2 * b), max(b, int(zero_share * m))}):
        q = p
        for _ in range(rounds if k >= b else 1):
            v = (U @ q).abs()
            kth = v.kthvalue(min(k, m), dim=0, keepdim=True).values
            mask = (v <= kth).to(U.dtype)
            gram = torch.einsum("mk,ma,mb->kab", mask, U, U)
            q = torch.linalg.eigh(gram)[1][:, :, 0].T
        out.append(q)
    return torch.cat(out, 1)


def dictionary_directions(lr: LowRank, g_b, weight, bias, *, tau: float, solver: str, per_round: int,
                          max_rounds: int, iters: int, rho: float, rounding: int, zero_share: float,
                          gen: torch.Generator, match_target: float, deadline: float) -> tuple[Selection | None, int]:
    """Steps 2-3 of spear++: ER-SpUD with single-row constraints (min ||L q||_1 s.t. l_j^T q = 1), then
    ``rounding`` further l1 problems with the previous solution as the constraint (the rounding step of Qu, Sun,
    Wright, "Finding a sparse vector in a subspace", NeurIPS 2014), then ``refine_zeros``. Constraint rows: live
    rows where the directions chosen so far are zero (fewest active first, random ties), ``per_round`` a round."""
    b = lr.L.shape[1]
    live_idx = torch.nonzero(lr.live).flatten()
    U, tri = torch.linalg.qr(lr.L[live_idx])                         # orthonormal basis of span(L) on live rows
    pool = Pool.empty(lr)
    min_zeros = max(b, int(math.ceil(tau * len(live_idx))))
    best, solved = None, 0
    for _ in range(max_rounds):
        if time.perf_counter() >= deadline:
            break
        if best is not None:
            active = (~zero_mask(lr, lr.L @ best.q)).sum(1)[live_idx].to(lr.L.dtype)
        else:
            active = torch.zeros(len(live_idx), dtype=lr.L.dtype, device=lr.L.device)
        noise = torch.rand(len(live_idx), generator=gen, device=lr.L.device, dtype=lr.L.dtype)
        rows = torch.argsort(active + noise)[:per_round]
        r = U[rows].T                                                # B x K constraint vectors
        for k in range(1 + rounding):
            p = _admm_l1(U, r, iters, rho) if solver == "admm" else _linprog_l1(U, r)
            r = p / p.norm(dim=0, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
        p = refine_zeros(U, r, zero_share)
        solved += rows.numel()
        pool.add(lr, torch.linalg.solve_triangular(tri, p, upper=True), min_zeros)  # q with L q = U p
        if pool.q.shape[1] >= b:
            best = _keep_better(best, greedy_select(lr, pool, g_b, weight, bias))
            if _done(best, lr.noise, match_target):
                break
    return best, solved


def _run(method: str, *, model: nn.Module, gradients, input_shape, batch_size, num_samples, seed, return_result,
         search) -> torch.Tensor:
    if gradients is None:
        raise ValueError(f"{method} needs gradients=... (a FedSGD gradient or a FedAvg fake gradient)")
    start = time.perf_counter()
    w_idx, b_idx, layer = first_linear_relu(model, input_shape, method)
    g_w, g_b = gradients[w_idx].detach(), gradients[b_idx].detach()
    if g_w.shape != layer.weight.shape or g_b.shape != layer.bias.shape:
        raise ValueError("gradients are not aligned with list(model.parameters())")
    weight = layer.weight.detach().to(device=g_w.device, dtype=g_w.dtype)
    bias = layer.bias.detach().to(device=g_w.device, dtype=g_w.dtype)
    lr = low_rank(g_w, batch_size, num_samples)
    gen = torch.Generator(device=g_w.device)
    gen.manual_seed(int(seed or 0))
    sel, tries = search(lr, g_b, weight, bias, gen)
    if sel is None:
        raise AttackNotApplicable(f"{method}: found fewer than {lr.L.shape[1]} independent sparse directions in "
                                  f"{tries} tries (raise the budget, or the batch is too large for {method})")
    out = sel.x.reshape(sel.x.shape[0], *[int(s) for s in input_shape])
    if return_result:
        from fedsim.attacks.inversion.core import InversionTrace

        seconds = time.perf_counter() - start
        return InversionTrace(method=method, inputs=out, labels=None, best_loss=1.0 - sel.match, history=[],
                              steps=tries, seconds=seconds, seconds_per_step=seconds / max(tries, 1),
                              options={"batch": lr.L.shape[1], "rank": lr.rank, "match": sel.match,
                                       "noise": lr.noise})
    return out


def spear(*, model: nn.Module, gradients: Sequence[torch.Tensor], input_shape: Sequence[int], labels=None,
          steps=None, mean=None, std=None, seed: int | None = 0, num_samples: int | None = None,
          batch_size: int | None = None, tau: float = 0.1, max_samples: int | None = None, chunk: int = 8192,
          time_limit: float = 600.0, match_target: float = 0.995, return_result: bool = False, callback=None,
          log_every=None, **unknown):
    """SPEAR (Dimitrov et al., NeurIPS 2024): the batch [B, *input_shape] in model space from the gradient of a
    first ``nn.Linear`` + ReLU layer. B: ``batch_size``, else the numerical rank of dL/dW capped by ``num_samples``.
    ``tau``: the sparsity filter (share of live rows at zero); ``max_samples``: sampled submatrices (default
    2^(B-1) x 16, at least 2^14, at most 2^23); ``time_limit`` seconds. ``labels``, ``steps``, ``mean``, ``std``
    are accepted for the uniform call and unused. ``AttackNotApplicable`` when the model does not fit or too few
    directions were found."""
    if unknown:
        raise ValueError(f"spear: unknown options {sorted(unknown)}; valid: batch_size, tau, max_samples, chunk, "
                         "time_limit, match_target, return_result")

    def search(lr, g_b, weight, bias, gen):
        b = lr.L.shape[1]
        budget = max_samples or int(min(2 ** 23, max(2 ** 14, 16 * 2 ** (b - 1))))
        return spear_directions(lr, g_b, weight, bias, tau=tau, max_samples=budget, chunk=chunk, gen=gen,
                                match_target=match_target, deadline=time.perf_counter() + time_limit)

    return _run("spear", model=model, gradients=gradients, input_shape=input_shape, batch_size=batch_size,
                num_samples=num_samples, seed=seed, return_result=return_result, search=search)


def spear_pp(*, model: nn.Module, gradients: Sequence[torch.Tensor], input_shape: Sequence[int], labels=None,
             steps=None, mean=None, std=None, seed: int | None = 0, num_samples: int | None = None,
             batch_size: int | None = None, tau: float = 0.1, solver: str = "admm", per_round: int | None = None,
             max_rounds: int = 40, iters: int = 200, rho: float = 1.0, rounding: int = 2, zero_share: float = 0.3,
             time_limit: float = 600.0,
             match_target: float = 0.995, return_result: bool = False, callback=None, log_every=None, **unknown):
    """SPEAR++ (Bakarsky et al., 2025): spear with the sampling replaced by ER-SpUD l1 problems (``solver`` admm or
    linprog; ``per_round`` problems per round, default 2B, at most ``max_rounds`` rounds; ADMM ``iters`` and
    ``rho``). Other options as :func:`spear`."""
    if unknown:
        raise ValueError(f"spear++: unknown options {sorted(unknown)}; valid: batch_size, tau, solver, per_round, "
                         "max_rounds, iters, rho, rounding, zero_share, time_limit, match_target, return_result")
    if solver not in SOLVERS:
        raise ValueError(f"spear++: solver={solver!r} is not one of {', '.join(SOLVERS)}")

    def search(lr, g_b, weight, bias, gen):
        k = per_round or 2 * lr.L.shape[1]
        return dictionary_directions(lr, g_b, weight, bias, tau=tau, solver=solver, per_round=k,
                                     max_rounds=max_rounds, iters=iters, rho=rho, rounding=rounding,
                                     zero_share=zero_share, gen=gen,
                                     match_target=match_target, deadline=time.perf_counter() + time_limit)

    return _run("spear++", model=model, gradients=gradients, input_shape=input_shape, batch_size=batch_size,
                num_samples=num_samples, seed=seed, return_result=return_result, search=search)
