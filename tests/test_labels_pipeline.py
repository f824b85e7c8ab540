"""The live attack pipeline runs aux-nnls from DataSpec.public_aux, and takes K as an estimate when told."""

import pytest
import torch
from torch import nn

from fedsim.attacks.generative import aux_split
from fedsim.attacks.pipeline import AttackPlan, DataSpec, attack_update
from fedsim.core.data import load_dataset
from fedsim.core.metrics.labels import true_counts
from fedsim.core.models.zoo import build_model
from fedsim.core.types import ClientUpdate


pytestmark = pytest.mark.usefixtures("one_thread")


def _factory():
    return build_model("fcn3", (1, 8, 8), 10, seed=0, hidden=(32,))


def _fedavg_update():
    """A FedAvg client (4 steps of 16, lr 0.05) on a model trained for 30 steps; returns (update, labels)."""
    ds = load_dataset("digits")
    x, y = ds.normalize(ds.train_x), ds.train_y
    model = _factory()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        i = torch.randint(0, len(x) // 2, (32,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    idx = len(x) // 2 + torch.randperm(len(x) - len(x) // 2, generator=gen)[:64]
    for xb, yb in zip(x[idx].chunk(4), y[idx].chunk(4)):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    after = {k: v.detach().clone() for k, v in model.named_parameters()}
    update = ClientUpdate("r", 1, 0, "fedavg", before, after, lr=0.05, local_epochs=1, local_steps=4, batch_size=16,
                          num_examples=64)
    return update, y[idx], ds


def test_pipeline_passes_the_public_split_to_aux_nnls():
    update, labels, ds = _fedavg_update()
    spec = DataSpec((1, 8, 8), 10, ds.mean, ds.std, public_aux=aux_split(ds, "test"))
    plan = AttackPlan(label_methods=("aux-nnls", "ilrg"), label_options={"aux-nnls": {"shrink": 0.0}})
    res = {r.method: r for r in attack_update(update, _factory, plan, spec)}
    assert res["aux-nnls"].ok and res["ilrg"].ok, res["aux-nnls"].error
    assert (res["aux-nnls"].num_samples, res["aux-nnls"].k_source) == (64, "reported")
    assert res["aux-nnls"].restoration.extras["trajectory_points"] == 4  # lr and local_steps were passed
    assert torch.equal(res["aux-nnls"].restoration.counts, true_counts(labels, 10))  # measured: exact
    no_aux = {r.method: r for r in attack_update(update, _factory, plan, DataSpec((1, 8, 8), 10, ds.mean, ds.std))}
    assert not no_aux["aux-nnls"].ok and "aux=" in no_aux["aux-nnls"].error and no_aux["ilrg"].ok


def test_pipeline_k_estimate():
    update, _, ds = _fedavg_update()
    out = attack_update(update, _factory, AttackPlan(label_methods=("ilrg",)), DataSpec((1, 8, 8), 10, ds.mean, ds.std),
                        k_estimate=60)
    assert (out[0].num_samples, out[0].k_source) == (60, "estimate") and len(out[0].labels) == 60
