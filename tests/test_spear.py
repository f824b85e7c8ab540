"""SPEAR / SPEAR++ (attacks/inversion/spear.py) and the exact_fraction metric (fedsim/core/metrics/exact.py)."""

from __future__ import annotations

import pytest
import torch

from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import invert
from fedsim.core.errors import AttackNotApplicable
from fedsim.core.metrics.exact import exact_fraction
from fedsim.core.metrics.images import align, to_pixels
from fedsim.core.models.zoo import build_model


@pytest.fixture(scope="module")
def mnist():
    from fedsim.core.data import load_dataset

    ds = load_dataset("mnist_subset")
    m = torch.tensor(ds.mean).view(-1, 1, 1)
    s = torch.tensor(ds.std).view(-1, 1, 1)
    return (ds.train_x[:128] - m) / s, ds.train_y[:128], ds.mean, ds.std


def _exact(rec, gt, mean, std) -> float:
    perm, _ = align(to_pixels(rec, mean, std), to_pixels(gt, mean, std))
    return exact_fraction(rec, gt, mean, std, perm)


def test_spear_recovers_fcn_batches_exactly(mnist):  # 0.9 s on an idle 2-core machine
    """fcn3 (784 -> 1000 ReLU -> 10), FedSGD gradient of real MNIST images: the whole batch at b = 2, 4, 8."""
    x, y, mean, std = mnist
    model = build_model("fcn3", (1, 28, 28), 10, seed=0, hidden=(1000,))
    for b in (2, 4, 8):
        xb = x[8 * b:9 * b]
        grads = batch_gradient(model, xb, y[8 * b:9 * b])
        rec = invert("spear", model=model, gradients=grads, input_shape=(1, 28, 28), mean=mean, std=std)
        assert rec.shape == xb.shape
        assert _exact(rec, xb, mean, std) >= 0.95, b


def test_spear_float64_follows_dtype(mnist):
    x, y, mean, std = mnist
    model = build_model("fcn3", (1, 28, 28), 10, seed=1, hidden=(300,)).double()
    xb = x[:4].double()
    grads = batch_gradient(model, xb, y[:4])
    rec = invert("spear", model=model, gradients=grads, input_shape=(1, 28, 28), mean=mean, std=std, seed=3)
    assert rec.dtype == torch.float64
    assert (rec - xb[align(to_pixels(rec, mean, std), to_pixels(xb, mean, std))[0]]).abs().max() < 1e-6 or \
        _exact(rec, xb, mean, std) == 1.0
    assert _exact(rec, xb, mean, std) == 1.0


@pytest.mark.parametrize("method", ["spear", "spear++"])
def test_spear_refuses_conv_and_non_relu_models(method, mnist):
    x, y, mean, std = mnist
    for name, opts in (("convnet", {}), ("fcn3", {"activation": "sigmoid", "hidden": (64,)})):
        model = build_model(name, (1, 28, 28), 10, seed=0, **opts)
        grads = batch_gradient(model, x[:2], y[:2])
        with pytest.raises(AttackNotApplicable):
            invert(method, model=model, gradients=grads, input_shape=(1, 28, 28), mean=mean, std=std)


def test_spear_pp_l1_solver_matches_linprog():
    """The batched ADMM of spear++ reaches the l1 optimum that HiGHS finds (min ||U p||_1 s.t. r^T p = 1)."""
    from fedsim.attacks.inversion.spear import _admm_l1, _linprog_l1

    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(120, 6, generator=g, dtype=torch.float64))
    r = U[:4].T.clone()
    p_admm = _admm_l1(U, r, iters=3000, rho=1.0)
    p_lp = _linprog_l1(U, r)
    assert torch.allclose((r * p_admm).sum(0), torch.ones(4, dtype=torch.float64), atol=1e-6)
    l1_admm, l1_lp = (U @ p_admm).abs().sum(0), (U @ p_lp).abs().sum(0)
    assert torch.all(l1_admm <= l1_lp * 1.01), (l1_admm, l1_lp)


def test_exact_fraction_known_answers():
    mean, std = (0.5,), (0.25,)
    gt = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 4 - 2  # model space
    perm = [2, 0, 3, 1]
    rec = torch.empty_like(gt)
    rec[perm] = gt  # rec[perm[j]] is ground truth j
    assert exact_fraction(rec, gt, mean, std, perm) == 1.0
    assert exact_fraction(rec, gt, mean, std, [0, 1, 2, 3]) < 1.0
    rec[perm[1], 0, 3, 3] += 2e-3 / std[0] + 1.0  # one pixel of image 1 off by > 1e-3 in pixel space (unclamped)
    gt_pix = to_pixels(gt, mean, std)
    expected = 0.75 if 0.0 < float(gt_pix[1, 0, 3, 3]) < 1.0 - 2e-3 else 1.0
    assert exact_fraction(rec, gt, mean, std, perm) == expected


def test_exact_fraction_row_field_and_ceiling_line():
    from fedsim.core.rows import InversionRow
    from fedsim.lab.report.inversions import exact_ceiling

    old = InversionRow.from_json({"kind": "inversion", "round": 1, "client": 0, "method": "ig", "ok": True})
    assert old.exact_fraction is None
    rows = [InversionRow(round=1, client=0, method="spear", ok=True, exact_fraction=1.0),
            InversionRow(round=1, client=1, method="spear", ok=True, exact_fraction=0.5), old]
    line = exact_ceiling(rows)
    assert "1 of 2 attacked updates are recoverable exactly" in line and "1 in part" in line
    assert exact_ceiling([old]) == ""


def test_spear_rows_score_exact_through_the_pipeline(mnist):  # 1.0 s on an idle 2-core machine
    """A FedSGD update of 4 images whose labels are not in sorted order, attacked by the pipeline (ilrg restores
    the labels first, then spear) and scored: every image recovered exactly. Before the fix the row carried
    ilrg's sorted labels beside spear's images (which come in spear's own order), and the label-aware alignment
    paired the wrong images: exact_fraction 0.125-0.375 on the fcn3 frontier setting's three updates."""
    import copy

    import torch.nn.functional as F

    from fedsim.attacks.pipeline import AttackPlan, DataSpec, attack_update
    from fedsim.core.types import ClientUpdate, GroundTruth, InversionResult
    from fedsim.evaluation.scoring import score

    from fedsim.core.data import load_dataset

    _, _, mean, std = mnist
    ds = load_dataset("mnist_subset")
    pick = torch.tensor([int(torch.nonzero(ds.train_y == c)[0]) for c in (7, 2, 9, 4)])  # unsorted labels
    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    xb, yb = (ds.train_x[pick] - m) / s, ds.train_y[pick]
    assert not bool((yb[1:] >= yb[:-1]).all())
    factory = lambda: build_model("fcn3", (1, 28, 28), 10, seed=0, hidden=(256,))  # noqa: E731
    model = factory()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    client = copy.deepcopy(model)
    opt = torch.optim.SGD(client.parameters(), lr=0.1)
    F.cross_entropy(client(xb), yb).backward()
    opt.step()
    after = {n: p.detach().clone() for n, p in client.named_parameters()}
    update = ClientUpdate("run", 1, 0, "fedsgd", before, after, lr=0.1, local_epochs=1, local_steps=1,
                          batch_size=4, num_examples=4)
    plan = AttackPlan(label_methods=("ilrg",), inversion="spear", seed=0)
    results = attack_update(update, factory, plan, DataSpec((1, 28, 28), 10, tuple(mean), tuple(std)))
    (inv,) = [r for r in results if isinstance(r, InversionResult)]
    assert inv.ok, inv.error
    row = score(inv, GroundTruth(1, 0, (xb,), (yb,)), 10, mean, std)
    assert row["exact_fraction"] == 1.0, row["exact_fraction"]


def test_sweep_point_carries_the_exact_ceiling():
    """A sweep point's exact-recovery ceiling (fedsim.lab.sweep.summary): per update the best exact method's share,
    whole updates counted over seeds, and the line the sweep page and terminal print; absent without exact rows."""
    from fedsim.core.rows import InversionRow
    from fedsim.lab.sweep.summary import aggregate, ceiling_line, exact_recovery

    seed0 = [InversionRow(round=1, client=0, method="spear", ok=True, exact_fraction=1.0),
             InversionRow(round=1, client=1, method="spear", ok=True, exact_fraction=0.25),
             InversionRow(round=1, client=1, method="spear++", ok=True, exact_fraction=0.5),
             InversionRow(round=1, client=1, method="ig", ok=True, exact_fraction=1.0)]  # not an exact method
    seed1 = [InversionRow(round=1, client=0, method="spear", ok=True, exact_fraction=1.0)]
    a, b = exact_recovery(seed0), exact_recovery(seed1)
    assert (a["updates"], a["whole"], a["fraction"]) == (2, 1, 0.75)
    assert exact_recovery([InversionRow(round=1, client=0, method="ig", ok=True, exact_fraction=1.0)]) is None
    base = {"test_accuracy": 0.9, "label_methods": {}, "inversion_methods": {}, "epsilon": None, "delta": None,
            "accountant": None, "dp_mechanism": None, "epsilon_source": None, "attacked_updates": 2,
            "lost_rounds": 0}
    row = aggregate([{**base, "exact_recovery": a}, {**base, "exact_recovery": b}])
    assert (row["exact_updates"], row["exact_whole"]) == (3, 2)
    assert ceiling_line(row) == ("exact-recovery ceiling (spear, spear++): 2 of 3 attacked updates recovered exactly; "
                                 "mean exact share 88%")
    assert ceiling_line(aggregate([base])) is None
    from fedsim.lab.sweep.page import _ceilings
    from fedsim.lab.terminal import sweep_line

    assert "2 of 3 attacked updates recovered exactly" in _ceilings([{**row, "label": "fcn3"}])
    assert _ceilings([{**aggregate([base]), "label": "cnn"}]) == ""
    assert sweep_line({**row, "label": "fcn3", "seeds_run": 2}).endswith("2 of 3 attacked updates recovered exactly; "
                                                         "mean exact share 88%")
