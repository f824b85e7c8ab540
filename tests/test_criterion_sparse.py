"""The attacker's criterion on a sparsified update compares only the coordinates the client sent."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion.criterion import criterion_name, gradient_cosine_distance


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))


def _topk(grads, ratio: float):
    out = []
    for g in grads:
        k = max(1, int(ratio * g.numel()))
        keep = g.abs().flatten().topk(k).indices
        flat = torch.zeros(g.numel())
        flat[keep] = g.flatten()[keep]
        out.append(flat.view_as(g))
    return out


def test_the_true_batch_matches_a_top_k_update_exactly_on_the_sent_coordinates():
    model = _model()
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 1])
    sent = _topk(batch_gradient(model, x, y), 0.1)
    dense = gradient_cosine_distance(model, x, y, sent)
    masked = gradient_cosine_distance(model, x, y, sent, sent_only=True)
    assert masked < 1e-6 < 0.05 < dense  # the dropped zeros make even the truth look far off
    other = gradient_cosine_distance(model, torch.randn_like(x), y, sent, sent_only=True)
    assert other > 0.05  # and the masked score still tells another batch apart
    assert criterion_name(1, 4, sent_only=True) == "grad-cosine@W0[sent]"
    assert criterion_name(2, 4) == "grad-cosine@unrolled(T=2, B=4)"


def test_the_pipeline_masks_only_when_the_update_was_sparsified():
    from fedsim.attacks.pipeline import _criterion
    from fedsim.core.types import ClientUpdate

    model = _model()
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 1])
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    sent = _topk(batch_gradient(model, x, y), 0.1)
    w1 = {n: w0[n] - 0.1 * g for (n, _), g in zip(model.named_parameters(), sent)}
    update = ClientUpdate("r", 1, 0, "fedsgd", w0, w1, 0.1, 1, 1, 4, 4)
    plain, name = _criterion(update, model, sent, 4, x, y)
    assert name == "grad-cosine@W0" and plain > 0.05
    topk = dataclasses.replace(update, defenses={"defense.update.topk_ratio": 0.1})
    masked, name = _criterion(topk, model, sent, 4, x, y)
    assert name == "grad-cosine@W0[sent]" and masked < 1e-6
