"""``aux-nnls``: fedsim's own label-count estimator for models that have learned (not a published method).

On a trained model every sample's last-layer gradient (p - onehot(y)) [e, 1] is small and class-specific, and
iLRG's identities (Approx. 2: the per-class features are constant) break (Ma et al., ICLR 2023, Fig. 2). The
curious server holds a *public* labelled split (e.g. half of the test set) and the global model, so it can
measure how a sample of each class shapes the classifier gradient at the current weights:

1. Per class j, the public mean A_j = E[(p - onehot(j)) [e, 1]^T | y = j] (a C x (m+1) matrix: weight gradient
   and bias gradient rows), and the per-entry variance of that per-sample gradient, pooled over classes.
   FedAvg (``local_steps`` T > 1 and ``lr`` given): the fake gradient averages T step gradients taken at moving
   weights; the statistics are averaged over weights W_t = W_0 - t lr g_fake, t = 0..T-1 (the straight line from
   the weights sent to the weights received, which the server knows exactly at both ends).
2. The observed K [dW, db] is matched by sum_j n_j A_j in the variance-whitened norm (diagonal weighted least
   squares): non-negative least squares (scipy ``nnls``) for the real counts n with sum n = K as a heavily
   weighted extra equation, plus an optional pull towards the even split K / C (``shrink``).
3. Integer counts: rounded to sum K, then a local search moves one unit between two classes while that lowers
   the objective (all moves scored at once from the C x C Gram matrix).
4. ``shrink="auto"`` (default) picks the pull from ``shrink_grid`` by simulation on the public split itself:
   statistics from one half, batches of K from the other half with Dirichlet(``calibration_alpha``) class
   proportions (so non-IID clients are part of the calibration), the two halves swapped for half of the
   ``calibration_trials`` (192), every weight scored on the same batches, best mean share of exact counts.
   With 48 draws on one half the pick moved between 0, 1 and 10 with ``seed`` alone (issue 36;
   docs/benchmarks/labels.md, "aux-nnls: calibration seed"). ``calibration_criterion="sqerr"`` (smallest mean
   squared count error) never moved, but picks a stronger pull that costs non-IID clients (measured there).

Measured (docs/benchmarks/labels.md, trained-model sections): exact counts on untrained models where iLRG
fails (K = 128 >> C, FedAvg), but once the model has learned (MNIST, 100+ SGD steps) it is no better than an
even split: a well-fitted sample's gradient is ~ (1 - p_y) times smaller, so its class is not in the update.
The public split must match the clients' data distribution.

Options: ``aux=(x_public, y_public)`` in model input space (required), ``lr`` and ``local_steps`` (FedAvg),
``max_aux`` (public samples used, default 2000, class-stratified), ``chunk`` (forward batch, default
``local_batch_size`` or K / T: the batch size BatchNorm in train mode sees), ``points`` (trajectory points,
default 4), ``shrink`` (float or "auto"), ``shrink_grid``, ``calibration_trials``, ``calibration_alpha``,
``calibration_criterion`` ("exact" | "sqerr"), ``calibration_folds`` (1 | 2), ``seed``. Works without a
classifier bias (weight rows only).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy.optimize import nnls
from torch import nn
from torch.func import functional_call

from fedsim.attacks.labels.common import check_num_samples, counts_to_labels, last_layer, preserved_state, round_to_total
from fedsim.core.models.zoo import classifier_layer
from fedsim.core.types import LabelRestoration


def public_aux(options: dict, num_classes: int, max_aux: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``aux=(x, y)`` option, checked, and capped at ``max_aux`` samples (class-stratified, deterministic)."""
    aux = options.get("aux")
    if aux is None:
        raise ValueError("aux-nnls needs the server's public labelled split: pass aux=(x_public, y_public) "
                         "(model input space)")
    x, y = aux
    y = torch.as_tensor(y).long().flatten()
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"aux: {len(x)} inputs but {len(y)} labels")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"aux labels must lie in [0, {num_classes})")
    if len(y) > max_aux:
        per = max(1, max_aux // num_classes)
        keep = torch.cat([torch.nonzero(y == c).flatten()[:per] for c in range(num_classes)])
        x, y = x[keep], y[keep.to(y.device)]
    return x, y


def _forward(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, chunk: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier inputs [N, m] and logits [N, C] (float64, on the model's device) at ``params``; buffers left
    untouched."""
    fc = classifier_layer(model)
    cap: dict[str, torch.Tensor] = {}

    def hook(_module, inputs, output):
        cap["e"], cap["z"] = inputs[0].detach(), output.detach()

    feats, logits = [], []
    handle = fc.register_forward_hook(hook)
    try:
        with torch.no_grad(), preserved_state(model):
            for s in range(0, len(x), chunk):
                xb = x[s:s + chunk]
                functional_call(model, params, (xb,))
                feats.append(cap["e"].reshape(len(xb), -1).double())
                logits.append(cap["z"].double())
    finally:
        handle.remove()
    return torch.cat(feats), torch.cat(logits)


class PublicView:
    """Per-sample classifier-gradient factors of the public samples at each trajectory point: the gradient
    of sample i at point t is r[t][i] (outer) e[t][i], r = softmax - onehot [N, C], e = [features, 1]."""

    def __init__(self, model: nn.Module, path: list[dict[str, torch.Tensor]], x: torch.Tensor, y: torch.Tensor,
                 chunk: int, with_bias: bool) -> None:
        self.y, self.r, self.e = y.to(x.device), [], []
        for params in path:
            e, z = _forward(model, params, x, chunk)
            if with_bias:
                e = torch.cat([e, torch.ones(len(e), 1, dtype=e.dtype, device=e.device)], dim=1)
            r = torch.softmax(z, dim=-1)
            r[torch.arange(len(self.y), device=r.device), self.y] -= 1.0
            self.r.append(r)
            self.e.append(e)

    def batch_sum(self, idx: torch.Tensor) -> torch.Tensor:
        """Sum of the per-sample gradients of samples ``idx`` (averaged over trajectory points) [C, m(+1)]."""
        return sum(r[idx].T @ e[idx] for r, e in zip(self.r, self.e)) / len(self.r)

    def class_statistics(self, idx: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(means [C, C, m(+1)]: mean per-sample gradient of each class among ``idx``; pooled variance)."""
        width = self.e[0].shape[1]
        like = dict(dtype=torch.float64, device=self.e[0].device)
        means = torch.zeros(num_classes, num_classes, width, **like)
        var = torch.zeros(num_classes, width, **like)
        present = 0
        for c in range(num_classes):
            sel = idx[self.y[idx] == c]
            if len(sel) == 0:  # no public sample of this class: its column stays zero (never picked)
                continue
            means[c] = self.batch_sum(sel) / len(sel)
            second = sum((r[sel] ** 2).T @ (e[sel] ** 2) for r, e in zip(self.r, self.e)) / (len(self.r) * len(sel))
            var += second - means[c] ** 2
            present += 1
        return means, var.clamp_min(0.0) / max(present, 1)


def trajectory(model: nn.Module, gradients: Sequence[torch.Tensor], lr: float | None, steps: int,
               points: int) -> list[dict[str, torch.Tensor]]:
    """Parameter sets W_t = W_0 - t lr g for up to ``points`` t in [0, T-1] (just W_0 for FedSGD)."""
    named = list(model.named_parameters())
    if steps <= 1 or not lr:
        return [{n: p.detach() for n, p in named}]
    ts = sorted({round(i * (steps - 1) / max(points - 1, 1)) for i in range(min(points, steps))})
    return [{n: (p.detach() - t * lr * g.to(device=p.device, dtype=p.dtype)) for (n, p), g in zip(named, gradients)}
            for t in ts]


def local_search(gram: torch.Tensor, h: torch.Tensor, counts: torch.Tensor, max_moves: int = 10_000
                 ) -> torch.Tensor:
    """Move single units between classes while n^T G n - 2 h^T n decreases (best move first)."""
    n = counts.clone().double()
    diag = torch.diagonal(gram)
    pair = diag[:, None] + diag[None, :] - 2.0 * gram  # cost of moving one unit a -> b: quadratic part
    for _ in range(max_moves):
        grad = gram @ n - h  # (1/2) d f / d n
        delta = 2.0 * (grad[None, :] - grad[:, None]) + pair  # delta[a, b]: f(n - e_a + e_b) - f(n)
        delta[n < 1] = math.inf  # only classes with a unit to give
        delta.fill_diagonal_(math.inf)
        best = int(torch.argmin(delta))
        a, b = divmod(best, len(n))
        if not float(delta[a, b]) < -1e-12 * max(1.0, float(h.abs().max())):
            break
        n[a] -= 1
        n[b] += 1
    return n.round().long()


class CountSolver:
    """:func:`solve_counts` for one (Gram matrix, K, shrink), factored once and applied to many ``h``."""

    def __init__(self, gram: torch.Tensor, k: int, shrink: float = 0.0) -> None:
        c = gram.shape[0]
        s = float(torch.diagonal(gram).mean()) / k
        like = dict(dtype=gram.dtype, device=gram.device)
        self.k, self.like, self.pull = k, like, shrink * s * (k / c)
        self.gram = gram + shrink * s * torch.eye(c, **like)
        ridge = 1e-10 * float(torch.diagonal(self.gram).mean()) + 1e-300
        self.lower = torch.linalg.cholesky(self.gram + ridge * torch.eye(c, **like))
        self.weight = 10.0 * math.sqrt(float(torch.diagonal(self.gram).max()))
        # the host crossing for scipy's NNLS (a (C+1) x C system), and back
        self.a = torch.cat([self.lower.T, self.weight * torch.ones(1, c, **like)]).cpu().numpy()

    def __call__(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = h + self.pull
        b = torch.cat([torch.linalg.solve_triangular(self.lower, h[:, None], upper=False)[:, 0],
                       torch.full((1,), self.weight * self.k, **self.like)])
        real = torch.from_numpy(np.asarray(nnls(self.a, b.cpu().numpy(), maxiter=50 * len(h))[0])).to(**self.like)
        return local_search(self.gram, h, round_to_total(real, self.k)), real


def solve_counts(gram: torch.Tensor, h: torch.Tensor, k: int, shrink: float = 0.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer counts n >= 0, sum K, minimising n^T G n - 2 h^T n + shrink * s * |n - K/C|^2; the real NNLS
    solution they were rounded from).

    ``s`` = mean diag(G) / K puts ``shrink`` on the scale of one sample's squared whitened gradient, so
    shrink = 1 weighs the uniform prior like one batch-sample's worth of evidence. Real solution by NNLS on a
    Cholesky factor (sum K as a heavily weighted row), rounded, then :func:`local_search`.
    """
    return CountSolver(gram, k, shrink)(h)


class Design:
    """Whitened class-mean design from public statistics: columns M_j / sd, and the observation map."""

    def __init__(self, means: torch.Tensor, var: torch.Tensor) -> None:
        self.w = (var + 1e-3 * float(var.mean()) + 1e-300).rsqrt()
        self.cols = (means * self.w).reshape(len(means), -1)
        self.gram = self.cols @ self.cols.T

    def h(self, observed_sum: torch.Tensor) -> torch.Tensor:
        return self.cols @ (observed_sum * self.w).reshape(-1)

    def per_sample_h(self, view: PublicView, idx: torch.Tensor) -> torch.Tensor:
        """[len(idx), C]: h of each public sample's own gradient (h is linear, so a batch's h is a row sum)."""
        c = self.cols.shape[0]
        proj = (self.cols.reshape(c, c, -1) * self.w).reshape(c * c, -1)  # [(j, class row), m(+1)]
        out = sum((e[idx] @ proj.T).reshape(len(idx), c, c).mul(r[idx][:, None, :]).sum(-1)
                  for r, e in zip(view.r, view.e))
        return out / len(view.r)


SHRINK_GRID = (0.0, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
CRITERIA = ("exact", "sqerr")


def calibrate_shrink(view: PublicView, k: int, num_classes: int, grid: Sequence[float], trials: int,
                     alpha: float, seed: int, criterion: str = "exact", folds: int = 2
                     ) -> tuple[float, dict[float, float]]:
    """Pick the prior weight by simulation on the public split (fedsim's own): statistics from one half,
    batches of K drawn from the other half with Dirichlet(alpha) class proportions (non-IID clients included);
    with ``folds`` = 2 the halves swap roles for half of the ``trials`` (cross-fitting). Every weight is scored on
    the same simulated batches. ``criterion`` "exact" (default): the mean share of classes with the exact count
    (LnAcc); "sqerr": minus the mean squared count error per class (steadier, but it picks a stronger pull that
    costs non-IID clients: issue 36). Ties go to the smaller weight."""
    order = torch.argsort(view.y, stable=True)
    halves = (order[0::2], order[1::2])
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)  # the Dirichlet draw: torch's Dirichlet.sample takes no generator
    dev = view.y.device
    scores = {lam: 0.0 for lam in grid}
    per_fold = [trials // folds + (f < trials % folds) for f in range(folds)]
    for f in range(folds):
        half_a, half_b = halves[f % 2], halves[1 - f % 2]
        design = Design(*view.class_statistics(half_a, num_classes))
        solvers = {lam: CountSolver(design.gram, k, lam) for lam in grid}
        sample_h = torch.zeros(len(view.y), num_classes, dtype=torch.float64, device=dev)
        sample_h[half_b] = design.per_sample_h(view, half_b)
        by_class = [half_b[view.y[half_b] == c] for c in range(num_classes)]
        avail = torch.tensor([len(b) > 0 for b in by_class], dtype=torch.float64)
        for _ in range(per_fold[f]):
            props = torch.from_numpy(rng.dirichlet(np.full(num_classes, float(alpha)))) if alpha > 0 else \
                torch.ones(num_classes, dtype=torch.float64)
            props = props * avail
            labels = torch.multinomial(props / props.sum(), k, replacement=True, generator=gen)
            idx = torch.cat([by_class[c][torch.randint(0, len(by_class[c]), (int((labels == c).sum()),),
                                                       generator=gen).to(dev)]
                             for c in range(num_classes) if (labels == c).any()])
            true = torch.bincount(labels, minlength=num_classes).to(dev)
            h = sample_h[idx].sum(dim=0)
            for lam in grid:
                est = solvers[lam](h)[0]
                score = (est == true).double().mean() if criterion == "exact" else \
                    -((est - true).double() ** 2).mean()
                scores[lam] += float(score) / trials
    best = max(grid, key=lambda lam: (round(scores[lam], 9), -lam))
    return best, scores


def restore_aux_nnls(model: nn.Module, gradients, num_samples: int, lr: float | None = None,
                     local_steps: int = 1, max_aux: int = 2000, chunk: int | None = None, points: int = 4,
                     shrink: float | str = "auto", shrink_grid: Sequence[float] = SHRINK_GRID,
                     calibration_trials: int = 192, calibration_alpha: float = 1.0, seed: int = 0,
                     calibration_criterion: str = "exact", calibration_folds: int = 2, **options) -> LabelRestoration:
    k = check_num_samples(num_samples)
    if calibration_criterion not in CRITERIA:
        raise ValueError(f"calibration_criterion: {calibration_criterion!r} is not one of {CRITERIA}")
    if int(calibration_folds) not in (1, 2):
        raise ValueError(f"calibration_folds: {calibration_folds!r} is not one of (1, 2)")
    _, gw, gb = last_layer(model, gradients)
    num_classes = gw.shape[0]
    x, y = public_aux(options, num_classes, max_aux)
    p0 = next(model.parameters())
    x = x.to(device=p0.device, dtype=p0.dtype)
    steps = max(int(local_steps or 1), 1)
    chunk = int(chunk or options.get("local_batch_size") or max(1, k // steps))
    path = trajectory(model, gradients, lr, steps, points)
    view = PublicView(model, path, x, y, chunk, gb is not None)
    scores: dict[float, float] = {}
    if shrink == "auto":
        shrink, scores = calibrate_shrink(view, k, num_classes, shrink_grid, calibration_trials, calibration_alpha,
                                          seed, calibration_criterion, calibration_folds)
    design = Design(*view.class_statistics(torch.arange(len(view.y), device=view.y.device), num_classes))
    observed = gw if gb is None else torch.cat([gw, gb[:, None]], dim=1)
    counts, real = solve_counts(design.gram, design.h(k * observed), k, float(shrink))
    return LabelRestoration(method="aux-nnls", counts=counts, labels=counts_to_labels(counts),
                            extras={"real_counts": real, "aux_samples": len(y), "trajectory_points": len(path),
                                    "shrink": float(shrink), "calibration_lnacc": scores})
