"""``ig-dpsgd``: Inverting Gradients with DP-SGD's per-example clipping in the attacker's forward model."""

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fedsim.attacks.inversion import INVERSION_METHODS, invert
from fedsim.attacks.pipeline import dp_sgd_clip_norm
from fedsim.core.errors import AttackNotApplicable
from fedsim.core.types import ClientUpdate

pytestmark = pytest.mark.usefixtures("seeded")  # every draw of the global RNG is seeded


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 4))


def _clipped_mean(model, x, y, c):
    """What Opacus releases without noise: mean over the batch of per-example gradients clipped to norm c."""
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss(p, xi, yi):
        return nn.functional.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    per = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    norms = torch.sqrt(sum(v.flatten(1).pow(2).sum(1) for v in per.values()))
    f = (c / (norms + 1e-6)).clamp(max=1.0)
    return [(per[n] * f.view(-1, *[1] * (per[n].dim() - 1))).mean(0) for n in params], norms


def _batch():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 8, 8, generator=gen)
    x[0] *= 0.05  # a dim example: its raw gradient is far smaller, so clipping re-weights the batch
    return x, torch.tensor([0, 1, 2])


def test_ig_dpsgd_recovers_a_clipped_batch_that_plain_ig_misreads():
    model = _model()
    x, y = _batch()
    target, norms = _clipped_mean(model, x, y, c=0.05)
    assert float(norms.min()) > 0.05  # every example is clipped: the release is a sum of equal-norm directions
    err = {}
    for method, opts in (("ig", {}), ("ig-dpsgd", {"clip_norm": 0.05})):
        r = invert(method, model=model, gradients=target, labels=y, input_shape=(1, 8, 8), steps=300, seed=0,
                   regularizers={"tv": 0.0}, return_result=True, **opts)
        err[method] = float(((r.inputs - x) ** 2).mean())
    assert err["ig-dpsgd"] < 1e-5  # the right forward model: exact up to optimisation
    assert err["ig"] > 20 * err["ig-dpsgd"]  # the summed (unclipped) forward model cannot explain the release


def test_ig_dpsgd_needs_the_clip_norm_and_no_batchnorm():
    model = _model()
    x, y = _batch()
    target, _ = _clipped_mean(model, x, y, c=1.0)
    with pytest.raises(ValueError, match="clip_norm"):
        invert("ig-dpsgd", model=model, gradients=target, labels=y, input_shape=(1, 8, 8), steps=2)
    bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 4))
    grads = [torch.zeros_like(p) for p in bn.parameters()]
    with pytest.raises(ValueError, match="BatchNorm"):
        invert("ig-dpsgd", model=bn, gradients=grads, labels=y, input_shape=(1, 8, 8), steps=2, clip_norm=1.0)
    assert "DP-SGD clip norm" in INVERSION_METHODS["ig-dpsgd"].needs


def test_the_pipeline_reads_the_clip_norm_from_the_public_defense_settings():
    def update(defenses):
        w = {"w": torch.zeros(2)}
        return ClientUpdate(run_id="r", server_round=1, client_id=0, algorithm="fedsgd", weights_before=w,
                            weights_after=w, lr=0.1, local_epochs=1, local_steps=1, batch_size=8, num_examples=8,
                            defenses=defenses)

    on = {"defense.dp_sgd.enabled": True, "defense.dp_sgd.max_grad_norm": 4.0}
    assert dp_sgd_clip_norm(update(on), "ig-dpsgd") == 4.0
    with pytest.raises(AttackNotApplicable, match="not trained with DP-SGD"):
        dp_sgd_clip_norm(update({"defense.dp_sgd.enabled": False, "defense.dp_sgd.max_grad_norm": 4.0}), "ig-dpsgd")
