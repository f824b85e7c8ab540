"""Shared pieces of the label restoration suite: last-layer gradient lookup, count fix-ups, dummy forwards.

Conventions (all methods):

* ``gradients`` is a list aligned with ``list(model.parameters())``: the mean cross-entropy gradient of one
  batch (FedSGD) or a FedAvg "fake gradient" ``(W_0 - W_T) / (T * lr)`` (Geng et al.).
* K (``restore_labels(num_samples=K)``, the row's ``num_samples``; the third positional argument of every
  method) is the number of sample *visits* the gradient averages over. FedSGD: the batch size.
  FedAvg: the fake gradient is the mean of T step gradients, each the mean over B samples, so it is the mean
  over ``T * B`` sample visits; K = ``local_steps * batch_size`` (see :func:`samples_covered`, which uses
  ``local_epochs * num_examples`` when the steps are full epochs over the client's data). Counts then
  refer to visits: divide by ``local_epochs`` for per-example counts of a client that saw its data E times.
* All arithmetic on gradients is float64 (embeddings / probabilities are returned in the model's dtype), on the
  gradients' device (a tensor a method creates takes
  ``device=`` from its inputs; solvers that need numpy cross to the host with ``.cpu()`` at the call).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

from fedsim.core.errors import AttackNotApplicable
from fedsim.core.models.zoo import classifier_layer


def _param_index(model: nn.Module, param: torch.Tensor) -> int:
    for i, p in enumerate(model.parameters()):
        if p is param:
            return i
    raise ValueError("classifier parameter not found among model.parameters()")


def last_layer(model: nn.Module, gradients: Sequence[torch.Tensor]) -> tuple[nn.Linear, torch.Tensor,
                                                                             torch.Tensor | None]:
    """(classifier layer, weight gradient [C, m] float64, bias gradient [C] float64 or None)."""
    params = list(model.parameters())
    if len(gradients) != len(params):
        raise ValueError(f"gradients has {len(gradients)} tensors but the model has {len(params)} parameters")
    fc = classifier_layer(model)
    gw = gradients[_param_index(model, fc.weight)].detach().double()
    if gw.shape != fc.weight.shape:
        raise ValueError(f"classifier weight gradient has shape {tuple(gw.shape)}, expected {tuple(fc.weight.shape)}")
    gb = None
    if fc.bias is not None:
        gb = gradients[_param_index(model, fc.bias)].detach().double().to(gw.device)
    return fc, gw, gb


def require_bias(gb: torch.Tensor | None, method: str, fallback: str) -> torch.Tensor:
    """Methods that need the classifier bias gradient fail loudly (never a silent wrong answer)."""
    if gb is None:
        raise AttackNotApplicable(f"label method {method!r} needs a bias in the last nn.Linear (the classifier "
                                  f"has none); use {fallback!r} instead")
    return gb


def check_num_samples(num_samples: int) -> int:
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples (K) must be a positive int, got {num_samples!r}")
    return num_samples


def samples_covered(local_steps: int, batch_size: int, num_examples: int, local_epochs: int = 1) -> int:
    """K to pass for a FedAvg update: sample visits averaged by the fake gradient.

    If the client ran whole epochs (``local_steps == local_epochs * ceil(num_examples / batch_size)``) the
    visits are ``local_epochs * num_examples`` (the last, smaller batch included); otherwise the client was
    step-limited and took ``local_steps`` full batches of ``batch_size``. (The fake gradient weighs every step
    equally, so a short last batch slightly over-weights its samples; that error is ignored.)
    """
    if local_epochs >= 1 and local_steps == local_epochs * math.ceil(num_examples / batch_size):
        return local_epochs * num_examples
    return local_steps * batch_size


def counts_to_labels(counts: torch.Tensor) -> torch.Tensor:
    """Expanded sorted label list from per-class counts."""
    counts = counts.clamp_min(0).long()
    return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)


def round_to_total(values: torch.Tensor, total: int) -> torch.Tensor:
    """Round nonnegative real counts to integers that sum exactly to ``total``.

    Negative values are clipped to 0, values are rounded, and the sum is fixed up one unit at a time:
    when the rounded sum is too large, units are REMOVED from the classes whose rounding added the most
    (largest ``rounded - real``) among classes with a positive count; when it is too small, units are added
    to the classes whose rounding lost the most. (The iLRG reference code slices ``inds[:num_mod]`` with a
    negative ``num_mod`` in the second case, which modifies all but |num_mod| classes; this does not.)
    """
    real = values.double().clamp_min(0.0)
    counts = torch.round(real).long()
    diff = int(counts.sum()) - int(total)
    while diff != 0:
        err = counts.double() - real
        if diff > 0:
            err = torch.where(counts > 0, err, torch.full_like(err, -math.inf))
            n = min(diff, int((counts > 0).sum()))
            idx = torch.argsort(err, descending=True)[:n]
            counts[idx] -= 1
            diff -= n
        else:
            n = min(-diff, len(counts))
            idx = torch.argsort(err)[:n]
            counts[idx] += 1
            diff += n
    return counts


def fill_presence(present: torch.Tensor, scores: torch.Tensor, total: int) -> torch.Tensor:
    """Counts for presence-only methods, so that ``labels`` still has length K.

    ``present`` is a bool mask, ``scores`` ranks classes (larger = more surely present). At most K classes
    can be present: keep the K best. Nothing present: take the best-scoring class. Every present class gets
    one count; the remaining K - |present| are spread as evenly as possible, extra units to the
    best-scoring present classes. Only presence is claimed; the counts beyond 1 are a uniform guess.
    """
    present = present.clone().bool()
    order = torch.argsort(scores.double(), descending=True)
    if int(present.sum()) == 0:
        present[order[0]] = True
    if int(present.sum()) > total:
        keep = [int(i) for i in order if present[i]][:total]
        present[:] = False
        present[keep] = True
    counts = present.long()
    rest = total - int(counts.sum())
    ranked = [int(i) for i in order if present[i]]
    per, extra = divmod(rest, len(ranked))
    counts[ranked] += per
    counts[ranked[:extra]] += 1
    return counts


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Run dummy forwards without side effects on BN running statistics (buffers restored afterwards)."""
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])


def infer_input_shape(model: nn.Module, options: dict) -> tuple[int, ...]:
    """``input_shape`` option, or the in_features of a leading nn.Linear (FCNs); else a ValueError."""
    if options.get("input_shape") is not None:
        return tuple(options["input_shape"])
    for module in model.modules():
        if isinstance(module, nn.Linear):
            return (module.in_features,)
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            break
    raise ValueError("this label method feeds dummy data through the model: pass input_shape=(C, H, W) "
                     "(or dummy_inputs=tensor)")


def dummy_inputs(model: nn.Module, n: int, options: dict) -> torch.Tensor:
    """Dummy inputs: ``dummy_inputs`` option, else N(0, 1) (or U(0,1) with ``dummy="uniform"``) in model space,
    on the model's device in its dtype (drawn by a seeded CPU generator, so the same on every device)."""
    p = next(model.parameters())
    if options.get("dummy_inputs") is not None:
        return torch.as_tensor(options["dummy_inputs"]).to(device=p.device, dtype=p.dtype)
    shape = infer_input_shape(model, options)
    gen = torch.Generator().manual_seed(int(options.get("seed", 0)))
    if options.get("dummy", "normal") == "uniform":
        return torch.rand((n, *shape), generator=gen, dtype=p.dtype).to(p.device)
    return torch.randn((n, *shape), generator=gen, dtype=p.dtype).to(p.device)


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(input of the classifier layer [N, m], logits [N, C]) for inputs x, with no side effects on buffers."""
    fc = classifier_layer(model)
    captured: dict[str, torch.Tensor] = {}

    def hook(_module, inputs, output):
        captured["e"] = inputs[0].detach()
        captured["z"] = output.detach()

    handle = fc.register_forward_hook(hook)
    try:
        with torch.no_grad(), preserved_state(model):
            model(x)
    finally:
        handle.remove()
    return captured["e"].reshape(len(x), -1).double(), captured["z"].double()


def softmax_of_embeddings(fc: nn.Linear, emb: torch.Tensor) -> torch.Tensor:
    """Rows: softmax(W e + b) for each embedding row e (float64)."""
    w = fc.weight.detach().to(emb.device, torch.float64)
    z = emb.double() @ w.T
    if fc.bias is not None:
        z = z + fc.bias.detach().to(emb.device, torch.float64)
    return torch.softmax(z, dim=-1)


def safe_divisor(x: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """x with |x| < eps replaced by +-eps (sign kept, 0 -> +eps): iLRG's guard against a zero bias gradient."""
    sign = torch.where(x < 0, -torch.ones_like(x), torch.ones_like(x))
    return torch.where(x.abs() < eps, sign * eps, x)
