"""Inversion follows the device and dtype of the model it is given: float64 end to end on the CPU (a tensor
created with the default dtype would show up as float32 or fail a dtype check), and the attack pipeline on a
CUDA GPU where one exists."""

import pytest
import torch
from torch import nn

from fedsim.attacks.gradients import batch_gradient, fake_gradient
from fedsim.attacks.inversion import INVERSION_METHODS, invert
from fedsim.attacks.pipeline import AttackPlan, DataSpec, attack_update
from fedsim.core.models.zoo import build_model
from fedsim.core.types import ClientUpdate

pytestmark = pytest.mark.usefixtures("seeded")  # every draw of the global RNG is seeded

SHAPE = (1, 8, 8)


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 64, 5))


def _case(model: nn.Module, dtype: torch.dtype, device: str = "cpu"):
    model = model.to(device=device, dtype=dtype)
    x = torch.rand(2, *SHAPE, dtype=dtype, device=device)
    y = torch.tensor([1, 3], device=device)
    return model, x, y, batch_gradient(model, x, y)


OPTIONS = {"dlg": {"num_samples": 2}, "idlg": {}, "fedavg-unrolled": {"lr": 0.1, "local_steps": 2,
                                                                     "local_batch_size": 1},
           "multi-update": {}, "gradinversion": {}, "ig-dpsgd": {"clip_norm": 1.0}}


@pytest.mark.parametrize("method", [m for m, rec in INVERSION_METHODS.items() if rec.spec is not None])
def test_every_engine_method_runs_in_float64(method):
    net = _bn_net() if method == "gradinversion" else build_model("lenet5", SHAPE, 5, seed=0)
    model, x, y, g = _case(net, torch.float64)
    opts = dict(OPTIONS.get(method, {}))
    labels = None if method == "dlg" else y
    if method == "idlg":
        model, x, y, g = _case(build_model("lenet5", SHAPE, 5, seed=0), torch.float64)
        g = batch_gradient(model, x[:1], y[:1])
        labels = None
    if method == "multi-update":
        opts["updates"] = [([p.detach() for p in model.parameters()], g)]
        g = None
    res = invert(method, model=model, gradients=g, labels=labels, input_shape=SHAPE, steps=3, seed=0,
                 restarts=2, return_result=True, **opts)
    assert res.inputs.dtype == torch.float64
    assert res.inputs.shape[1:] == SHAPE and bool(torch.isfinite(res.inputs).all())
    assert next(model.parameters()).dtype == torch.float64  # the caller's model is untouched


def test_float64_matches_float32_start_and_restarts_are_independent():
    """Same seed -> same initial point in either dtype; vmapped restarts equal the Python loop."""
    model, x, y, g = _case(build_model("lenet5", SHAPE, 5, seed=0, activation="relu"), torch.float64)
    kw = dict(model=model, gradients=g, labels=y, input_shape=SHAPE, steps=4, seed=3, restarts=3,
              return_result=True)
    a = invert("ig", batch_restarts=True, **kw)
    b = invert("ig", batch_restarts=False, **kw)
    assert torch.allclose(a.inputs, b.inputs, atol=1e-9)
    assert a.best_loss == pytest.approx(b.best_loss, rel=1e-9)


def _update(model: nn.Module, dtype: torch.dtype) -> ClientUpdate:
    model = model.to(dtype)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.rand(2, *SHAPE, dtype=dtype)
    g = batch_gradient(model, x, torch.tensor([0, 2]))
    after = {n: before[n] - 0.1 * gi for n, gi in zip(before, g)}
    return ClientUpdate("run", 1, 0, "fedsgd", before, after, lr=0.1, local_epochs=1, local_steps=1,
                        batch_size=2, num_examples=2)


def _plan() -> tuple[AttackPlan, DataSpec]:
    return (AttackPlan(label_methods=("ilrg",), inversion="ig", inversion_steps=3),
            DataSpec(input_shape=SHAPE, num_classes=5, mean=(0.5,), std=(0.25,)))


def test_attack_update_in_float64_on_cpu():
    update = _update(build_model("lenet5", SHAPE, 5, seed=0), torch.float64)
    plan, data = _plan()
    results = attack_update(update, lambda: build_model("lenet5", SHAPE, 5, seed=1).double(), plan, data)
    inv = [r for r in results if r.attack == "inversion"]
    assert len(inv) == 1 and inv[0].ok, inv
    assert inv[0].reconstruction.dtype == torch.float64 and inv[0].reconstruction.shape == (2, *SHAPE)


def test_fake_gradient_follows_the_model_dtype():
    update = _update(build_model("lenet5", SHAPE, 5, seed=0), torch.float32)
    grads = fake_gradient(update, build_model("lenet5", SHAPE, 5, seed=0).double())
    assert all(g.dtype == torch.float64 for g in grads)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_attack_update_on_cuda():
    update = _update(build_model("lenet5", SHAPE, 5, seed=0), torch.float32)
    plan, data = _plan()
    results = attack_update(update, lambda: build_model("lenet5", SHAPE, 5, seed=1).cuda(), plan, data)
    inv = [r for r in results if r.attack == "inversion"]
    assert len(inv) == 1 and inv[0].ok, inv
    assert inv[0].reconstruction.is_cuda and bool(torch.isfinite(inv[0].reconstruction).all())
    model, x, y, g = _case(build_model("lenet5", SHAPE, 5, seed=0), torch.float32, "cuda")
    out = invert("ig", model=model, gradients=g, labels=y.cpu(), input_shape=SHAPE, steps=3, restarts=2)
    assert out.is_cuda
