"""Known answers: FedSGD's (W_before - W_after)/lr is the autograd gradient; FedAvg's one-step fake
gradient equals it; multi-step fake gradients are the mean of the step gradients."""

import torch

from fedsim.attacks.gradients import batch_gradient, fake_gradient, weights_to_fake_gradient
from fedsim.core.models import build_model
from fedsim.core.training import step_batches, train_locally
from fedsim.core.types import ClientUpdate


def _setup(seed=0):
    torch.manual_seed(seed)
    model = build_model("convnet", (1, 12, 12), 5, seed=seed, width=4).double()
    x = torch.randn(20, 1, 12, 12, dtype=torch.float64)
    y = torch.randint(0, 5, (20,))
    return model, x, y


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_fedsgd_delta_over_lr_is_the_autograd_gradient():
    model, x, y = _setup()
    before = _params(model)
    lr = 0.1
    res = train_locally(model, x, y, algorithm="fedsgd", lr=lr, epochs=1, batch_size=8, seed=3,
                        server_round=1, client_id=0)
    assert res.steps == 1
    fresh, _, _ = _setup()
    grads = batch_gradient(fresh, res.ground_truth.inputs[0], res.ground_truth.labels[0])
    fake = weights_to_fake_gradient(before, _params(model), lr, 1, [n for n, _ in fresh.named_parameters()])
    for g, f in zip(grads, fake):
        torch.testing.assert_close(f, g, rtol=1e-9, atol=1e-12)


def test_fedavg_one_step_fake_gradient_via_client_update():
    model, x, y = _setup(1)
    before = _params(model)
    lr = 0.05
    res = train_locally(model, x[:8], y[:8], algorithm="fedavg", lr=lr, epochs=1, batch_size=8, seed=0,
                        server_round=2, client_id=3)
    assert res.steps == 1
    update = ClientUpdate(run_id="t", server_round=2, client_id=3, algorithm="fedavg", weights_before=before,
                          weights_after=_params(model), lr=lr, local_epochs=1, local_steps=res.steps,
                          batch_size=8, num_examples=8)
    fresh, _, _ = _setup(1)
    grads = batch_gradient(fresh, res.ground_truth.inputs[0], res.ground_truth.labels[0])
    for g, f in zip(grads, fake_gradient(update, fresh)):
        torch.testing.assert_close(f, g, rtol=1e-9, atol=1e-12)


def test_fedavg_multi_step_fake_gradient_is_mean_of_step_gradients():
    model, x, y = _setup(2)
    before = _params(model)
    lr = 0.01
    res = train_locally(model, x, y, algorithm="fedavg", lr=lr, epochs=1, batch_size=5, seed=1,
                        server_round=1, client_id=0)
    assert res.steps == 4
    replay, _, _ = _setup(2)
    total = None
    for xb, yb in zip(res.ground_truth.inputs, res.ground_truth.labels):
        g = batch_gradient(replay, xb, yb)
        total = g if total is None else [a + b for a, b in zip(total, g)]
        with torch.no_grad():
            for p, gi in zip(replay.parameters(), g):
                p.sub_(lr * gi)
    fake = weights_to_fake_gradient(before, _params(model), lr, res.steps)
    for t, f in zip(total, fake):
        torch.testing.assert_close(f, t / res.steps, rtol=1e-8, atol=1e-10)


def test_step_batches_cover_partition_each_epoch_and_are_deterministic():
    a = step_batches(23, "fedavg", 5, 2, seed=7)
    b = step_batches(23, "fedavg", 5, 2, seed=7)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert len(a) == 10
    first_epoch = torch.cat(a[:5]).sort().values
    assert torch.equal(first_epoch, torch.arange(23))
    assert len(step_batches(23, "fedavg", 5, 2, seed=7, max_steps=3)) == 3
    sgd = step_batches(23, "fedsgd", 8, 1, seed=1)
    assert len(sgd) == 1 and len(sgd[0]) == 8 and len(set(sgd[0].tolist())) == 8


def test_training_follows_the_model_dtype_and_keeps_truth_as_given():
    """A float64 model trains on float32 client data (batches cast to the model's dtype, as they are moved to
    its device); the FedSGD update is still the batch's exact mean gradient, the ground truth stays float32."""
    torch.manual_seed(0)
    model = build_model("fcn3", (1, 4, 4), 3, seed=0, hidden=(8,)).double()
    x, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    before = [p.detach().clone() for p in model.parameters()]
    res = train_locally(model, x, y, algorithm="fedsgd", lr=0.1, epochs=1, batch_size=4, seed=3, server_round=1,
                        client_id=0)
    xb, yb = res.ground_truth.inputs[0], res.ground_truth.labels[0]
    assert xb.dtype == torch.float32 and yb.dtype == torch.long
    ref = build_model("fcn3", (1, 4, 4), 3, seed=0, hidden=(8,)).double()
    loss = torch.nn.functional.cross_entropy(ref(xb.double()), yb)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    for b, p, g in zip(before, model.parameters(), grads):
        assert p.dtype == torch.float64
        torch.testing.assert_close((b - p.detach()) / 0.1, g, rtol=1e-9, atol=1e-12)
