"""``rlu``: RLU, label counts from the output-layer bias update (Chen & Vikalo, "Recovering Labels from Local
Updates in Federated Learning", ICML 2024; the authors' code: github.com/CityChan/Recovering-Label-from-Update,
``client/client_utils.py`` and ``client/client_base.py:RLU``, read, not copied).

The model of a sample's output (paper, Sec. 3): a sample of class c puts the *erroneous confidence* s_j on
every other class j and 1 - sum_{i != c} s_i on its own class, so the mean cross-entropy bias gradient of K
sample visits is  g_j = s_j - n_j S / K  (S = sum_i s_i), i.e.  n_j = K (s_j - g_j) / S, and sum_j n_j = K
holds by itself (softmax bias gradients sum to 0). RLU solves this least-squares system for the counts n:

1. Erroneous confidence from the server's public split at the global model W_0 (the paper's Monte Carlo
   estimate on a small auxiliary set, 100 samples per class by default): per class j, statistics of the
   outputs of the public samples of the *other* classes. ``confidence="softmax-of-mean"`` (default, as the
   authors' code computes it): mu_j = mean over classes c != j of the class-c mean logit of class j, and
   s = softmax(mu) (S = 1); ``"mean-softmax"``: s_j = mean over c != j of the class-c mean softmax output
   of class j (the expectation the paper writes, estimated with the public samples themselves as the
   Monte Carlo draws instead of draws from a fitted Gaussian).
2. FedSGD (``local_steps`` T = 1): n = K (s - g) / S, negatives clipped to 0, rescaled to sum K (as the
   authors' code), rounded to integers summing to K (``common.round_to_total``).
3. FedAvg (T > 1, ``lr`` required): the intermediate models are not sent, so RLU simulates how the
   erroneous logits move over the T local steps. Step t changes the logits of every sample by
   d_j = -lr (s_j^t - n_j S^t / (T B)) |h|^2 (row j of the weight update times a feature h; B = the local
   batch, ``local_batch_size`` or K / T, each step assumed to hold n / T of every class), so
   mu^{t+1} = mu^t + d and s^{t+1} is recomputed from the shifted logits. The counts n enter the
   simulation, so RLU iterates (``iterations``, paper: T = 5): start from n solved with the confidence
   measured at the weights received, W_T = W_0 - T lr g (the server has them); simulate; compare the
   simulated mu^T with mu measured at W_T; move T visits (one per step) from the class whose simulated
   logit is most above the measured one to the class most below; stop when every gap is under
   ``tolerance`` (0.1, as the code) or the gaps share one sign. Final counts: step 2 with s averaged over
   the simulated steps t = 0..T-1.

Where this is fedsim's reading rather than the paper / code (the paper's full text was not available here,
only its abstract and summaries; the code was): |h|^2 comes from the update itself as the code does
(``feature="gradient"``: h_d = mean over classes j of dW_{j,d} / db_j) or, ``feature="public"``, as the
mean squared classifier input of the public samples at W_0 plus 1 (the bias); the code compares the
simulated logits after T - 1 updates with the measured ones and indexes the measured vector by the last
epoch (a slip), here the simulation runs all T updates and compares vectors; per-step counts n / T stay
real-valued (the code rounds them); the final simulation uses the refined counts (the code returns the
one before its last move). The paper's extensions to FedProx / Scaffold / momentum optimisers (its
rho(tau), h_j(t) coefficients) are not implemented: plain local SGD only.

Options: ``aux=(x_public, y_public)`` in model input space (required: else ``AttackNotApplicable``),
``lr``, ``local_steps``, ``local_batch_size`` (the client schedule), ``max_aux`` (default 1000,
class-stratified), ``chunk`` (forward batch, default the local batch: what BatchNorm in train mode sees),
``confidence``, ``feature``, ``iterations``, ``tolerance``. Needs the classifier bias.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from fedsim.attacks.labels.aux import _forward, public_aux
from fedsim.attacks.labels.common import check_num_samples, counts_to_labels, last_layer, require_bias, round_to_total
from fedsim.core.errors import AttackNotApplicable
from fedsim.core.types import LabelRestoration

CONFIDENCES = ("softmax-of-mean", "mean-softmax")
FEATURES = ("gradient", "public")


class ErroneousView:
    """The public samples' classifier inputs and logits at one set of weights, and their erroneous statistics."""

    def __init__(self, logits: torch.Tensor, y: torch.Tensor, num_classes: int, feats: torch.Tensor | None = None):
        self.z, self.y, self.c = logits, y.to(logits.device), num_classes
        self.present = torch.stack([(self.y == c).any() for c in range(num_classes)])
        self.feat_sq = None if feats is None else float((feats ** 2).sum(1).mean()) + 1.0

    def _class_means(self, values: torch.Tensor) -> torch.Tensor:
        """[C, C]: row c = mean of ``values`` over the public samples of class c (absent classes: zeros)."""
        out = torch.zeros(self.c, values.shape[1], dtype=torch.float64, device=values.device)
        for c in range(self.c):
            if self.present[c]:
                out[c] = values[self.y == c].mean(0)
        return out

    def _off_class(self, rows: torch.Tensor) -> torch.Tensor:
        """[C]: entry j = mean over the present classes c != j of rows[c, j] (the erroneous part)."""
        w = self.present.double()[:, None].expand(self.c, self.c).clone()
        w.fill_diagonal_(0.0)
        return (rows * w).sum(0) / w.sum(0).clamp_min(1.0)

    def mu(self, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Erroneous logits mu_j (logits shifted by ``shift`` [C] first; a common shift moves mu alike)."""
        mu = self._off_class(self._class_means(self.z))
        return mu if shift is None else mu + shift

    def confidence(self, kind: str, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Erroneous confidence s [C] after adding ``shift`` to every sample's logits."""
        if kind == "softmax-of-mean":
            return torch.softmax(self.mu(shift), 0)
        z = self.z if shift is None else self.z + shift
        return self._off_class(self._class_means(torch.softmax(z, 1)))


def counts_from_bias(conf: torch.Tensor, gb: torch.Tensor, k: int) -> torch.Tensor:
    """Real counts: n_j = K (s_j - g_j) / S, negatives clipped, rescaled to sum K (even split if all clip)."""
    r = (conf - gb).clamp_min(0.0)
    if float(r.sum()) <= 0:
        return torch.full_like(r, k / len(r))
    return r / r.sum() * k


def simulate(view: ErroneousView, counts: torch.Tensor, kind: str, steps: int, batch: int, lr: float,
             feat_sq: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean erroneous confidence over steps 0..T-1, simulated erroneous logits after T steps)."""
    shift = torch.zeros(view.c, dtype=torch.float64, device=view.z.device)
    per_step = counts.double() / steps
    confs = []
    for _ in range(steps):
        s = view.confidence(kind, shift)
        confs.append(s)
        shift = shift - lr * (s - per_step * float(s.sum()) / batch) * feat_sq
    return torch.stack(confs).mean(0), view.mu(shift)


def refine(view: ErroneousView, target_mu: torch.Tensor, counts: torch.Tensor, kind: str, steps: int, batch: int,
           lr: float, feat_sq: float, iterations: int, tolerance: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """RLU's iterative correction of the counts from the simulated vs measured erroneous logits at W_T."""
    n = counts.clone().long()
    moves = 0
    for _ in range(iterations):
        _, mu_t = simulate(view, n, kind, steps, batch, lr, feat_sq)
        diff = mu_t - target_mu
        if float(diff.abs().max()) < tolerance or bool((diff >= 0).all()) or bool((diff < 0).all()):
            break
        over = torch.where((diff >= 0) & (n >= steps), diff, torch.full_like(diff, -float("inf")))
        if not torch.isfinite(over.max()):
            break
        n[int(torch.argmax(over))] -= steps
        n[int(torch.argmin(diff))] += steps
        moves += 1
    conf, _ = simulate(view, n, kind, steps, batch, lr, feat_sq)
    return conf, n, moves


def gradient_feature_sq(gw: torch.Tensor, gb: torch.Tensor) -> float:
    """|h|^2 of the feature the authors' code reads off the update: h_d = mean_j dW_{j,d} / db_j."""
    h = torch.nan_to_num(gw / gb[:, None], nan=0.0, posinf=0.0, neginf=0.0).mean(0)
    return float((h ** 2).sum())


def _view(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, chunk: int,
          num_classes: int) -> ErroneousView:
    feats, logits = _forward(model, params, x, chunk)
    return ErroneousView(logits, y, num_classes, feats)


def _schedule(k: int, lr: float | None, local_steps, local_batch_size) -> tuple[int, int]:
    steps = int(local_steps or 1)
    if steps < 1:
        raise AttackNotApplicable(f"rlu: local_steps must be >= 1, got {local_steps!r}")
    if steps > 1 and not (isinstance(lr, (int, float)) and lr > 0):
        raise AttackNotApplicable("rlu simulates the client's local steps: a FedAvg update (local_steps > 1) "
                                  "needs the client's lr (the client schedule)")
    batch = int(local_batch_size or max(1, k // steps))
    return steps, batch


def restore_rlu(model: nn.Module, gradients: Sequence[torch.Tensor], num_samples: int, lr: float | None = None,
                local_steps: int = 1, local_batch_size: int | None = None, max_aux: int = 1000,
                chunk: int | None = None, confidence: str = "softmax-of-mean", feature: str = "gradient",
                iterations: int = 5, tolerance: float = 0.1, **options) -> LabelRestoration:
    k = check_num_samples(num_samples)
    if confidence not in CONFIDENCES or feature not in FEATURES:
        raise AttackNotApplicable(f"rlu: confidence must be one of {CONFIDENCES} and feature one of {FEATURES}, "
                                  f"got {confidence!r}, {feature!r}")
    _, gw, gb = last_layer(model, gradients)
    gb = require_bias(gb, "rlu", "aux-nnls")
    num_classes = gw.shape[0]
    if options.get("aux") is None:
        raise AttackNotApplicable("rlu needs the server's public labelled split: pass aux=(x_public, y_public) "
                                  "(model input space)")
    try:
        x, y = public_aux(options, num_classes, max_aux)
    except ValueError as exc:
        raise AttackNotApplicable(f"rlu: {str(exc).replace('aux-nnls', 'rlu')}") from exc
    steps, batch = _schedule(k, lr, local_steps, local_batch_size)
    p0 = next(model.parameters())
    x = x.to(device=p0.device, dtype=p0.dtype)
    chunk = int(chunk or batch)
    named = list(model.named_parameters())
    start = {n: p.detach() for n, p in named}
    view0 = _view(model, start, x, y, chunk, num_classes)
    extras: dict = {"aux_samples": len(y), "confidence": confidence}
    if steps == 1:
        conf = view0.confidence(confidence)
    else:
        end = {n: p.detach() - steps * lr * g.to(device=p.device, dtype=p.dtype) for (n, p), g in zip(named, gradients)}
        view_t = _view(model, end, x, y, chunk, num_classes)
        feat_sq = gradient_feature_sq(gw, gb) if feature == "gradient" else view0.feat_sq
        first = round_to_total(counts_from_bias(view_t.confidence(confidence), gb, k), k)
        conf, refined, moves = refine(view0, view_t.mu(), first, confidence, steps, batch, float(lr), feat_sq,
                                      iterations, tolerance)
        extras.update(first_counts=first, refined_counts=refined, moves=moves, feature_sq=feat_sq)
    real = counts_from_bias(conf, gb, k)
    counts = round_to_total(real, k)
    return LabelRestoration(method="rlu", counts=counts, labels=counts_to_labels(counts),
                            extras={"real_counts": real, "erroneous_confidence": conf, **extras})
