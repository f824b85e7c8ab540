"""RLU (Chen & Vikalo, ICML 2024): known answers on models whose outputs do not depend on the input, a FedAvg
run, and the one-line refusals. CPU, seconds."""

import pytest
import torch
from torch import nn

from fedsim.attacks.gradients import batch_gradient, weights_to_fake_gradient
from fedsim.attacks.labels import LABEL_METHODS, restore_labels
from fedsim.attacks.labels.rlu import ErroneousView, counts_from_bias
from fedsim.core.errors import AttackNotApplicable
from fedsim.core.metrics.labels import true_counts

pytestmark = pytest.mark.usefixtures("one_thread")

C = 6


def _model(zero_weight: bool = True, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, C))
    if zero_weight:  # logits = bias for every input: every sample's softmax is softmax(b)
        with torch.no_grad():
            model[-1].weight.zero_()
            model[-1].bias.copy_(torch.linspace(-1.0, 1.0, C))
    return model


def _data(n: int, seed: int, skew: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    probs = torch.tensor([0.5, 0.25, 0.1, 0.1, 0.05, 0.0]) if skew else torch.ones(C)
    return torch.randn(n, 12, generator=gen), torch.multinomial(probs, n, replacement=True, generator=gen)


@pytest.mark.parametrize("confidence", ["softmax-of-mean", "mean-softmax"])
def test_exact_counts_when_outputs_ignore_the_input(confidence):
    """Zero classifier weights: p = softmax(b) for every sample, so the erroneous confidence is exact and the
    bias gradient g = s - n / K gives the counts back exactly (also for a skewed batch with an absent class)."""
    model = _model()
    aux = _data(120, 1)
    for seed, skew in ((2, False), (3, True), (4, True)):
        x, y = _data(40, seed, skew)
        res = restore_labels("rlu", model=model, gradients=batch_gradient(model, x, y), num_samples=40, aux=aux,
                             confidence=confidence)
        assert torch.equal(res.counts, true_counts(y, C)), (res.counts, true_counts(y, C))
        assert int(res.counts.sum()) == 40 and len(res.labels) == 40


def test_counts_sum_to_k_on_a_random_model():
    model = _model(zero_weight=False)
    aux = _data(120, 1)
    x, y = _data(33, 5)
    res = restore_labels("rlu", model=model, gradients=batch_gradient(model, x, y), num_samples=33, aux=aux)
    assert int(res.counts.sum()) == 33 and (res.counts >= 0).all()
    assert float((res.extras["real_counts"].sum() - 33).abs()) < 1e-9


def test_fedavg_near_exact_from_a_flat_start():
    """T = 4 local steps of 16 (K = 64 visits) from a start whose outputs ignore the input: the simulated
    erroneous logits follow the real ones closely enough for near-exact counts (instance accuracy >= 0.9)."""
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    aux = _data(120, 1)
    x, y = _data(64, 7, skew=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for xb, yb in zip(x.chunk(4), y.chunk(4)):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.load_state_dict(state)
    grads = weights_to_fake_gradient(before, after, 0.1, 4)
    for feature in ("gradient", "public"):
        res = restore_labels("rlu", model=model, gradients=grads, num_samples=64, aux=aux, lr=0.1, local_steps=4,
                             local_batch_size=16, feature=feature)
        assert int(res.counts.sum()) == 64 and "refined_counts" in res.extras
        overlap = int(torch.minimum(res.counts, true_counts(y, C)).sum())
        assert overlap >= 58, (feature, res.counts, true_counts(y, C))


def test_refusals_are_one_line_and_not_applicable():
    model = _model(zero_weight=False)
    x, y = _data(16, 8)
    g = batch_gradient(model, x, y)
    aux = _data(60, 1)
    cases = [dict(), dict(aux=(aux[0], aux[1][:10])), dict(aux=aux, local_steps=4),
             dict(aux=aux, confidence="bogus")]
    for options in cases:
        with pytest.raises(AttackNotApplicable) as err:
            restore_labels("rlu", model=model, gradients=g, num_samples=16, **options)
        assert "\n" not in str(err.value) and str(err.value).startswith("rlu"), str(err.value)
    nobias = nn.Sequential(nn.Flatten(), nn.Linear(12, C, bias=False))
    with pytest.raises(AttackNotApplicable, match="bias"):
        restore_labels("rlu", model=nobias, gradients=batch_gradient(nobias, x, y), num_samples=16, aux=aux)


def test_registered_with_its_needs():
    assert set(LABEL_METHODS["rlu"].needs) == {"public split", "client schedule"}
    assert "rlu" in LABEL_METHODS.needing("client schedule")


def test_erroneous_view_off_class_average():
    """mu_j averages class j's logit over the *other* classes' public samples only."""
    z = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    view = ErroneousView(z, torch.tensor([0, 1, 2]), 3)
    assert torch.allclose(view.mu(), torch.tensor([2.0, 2.5, 0.5], dtype=torch.float64))
    assert torch.allclose(counts_from_bias(torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5]), 4),
                          torch.tensor([2.0, 2.0]))
