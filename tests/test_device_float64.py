"""Device discipline, checked on CPU (issue 33, check a): every registered label and inversion method, through the
attack pipeline and the scoring, runs end to end in float64 on a float64 model and answers in float64.

A tensor created without ``dtype=`` / ``*_like`` comes out float32 (or fails a dtype check) here, just as one created
without ``device=`` breaks on a GPU. The tests are parametrized over the registries, so a newly registered method is
covered by the next run. Tiny shapes and 2 steps: each case is well under a second.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from fedsim.attacks.inversion import INVERSION_METHODS
from fedsim.attacks.labels import LABEL_METHODS
from fedsim.attacks.pipeline import AttackPlan, DataSpec, attack_update
from fedsim.core.models.zoo import build_model
from fedsim.core.types import ClientUpdate, GroundTruth, InversionResult, LabelResult
from fedsim.evaluation.identify import Identify, PublicClassifier
from fedsim.evaluation.scoring import score

pytestmark = pytest.mark.usefixtures("one_thread", "seeded")

SHAPE, CLASSES, K = (1, 8, 8), 4, 2
MEAN, STD = (0.5,), (0.25,)
LR = 0.1


#: the victim each method is built for (the rest: a small CNN with train-mode BatchNorm, buffers sent, batch 2)
SETUPS: dict[str, tuple[str, int]] = {
    "analytic-fc": ("fcn3", K),  # a leading fully connected layer
    "spear": ("fcn3", K),  # a leading fully connected layer followed by ReLU
    "spear++": ("fcn3", K),
    "idlg": ("convnet", 1),  # iDLG's label rule: batch size 1
    "ig-dpsgd": ("convnet-nobn", K),  # per-example clipping: no BatchNorm (DP-SGD clients use none)
}


def _model(name: str = "convnet"):
    if name == "fcn3":
        return build_model("fcn3", SHAPE, CLASSES, seed=1).double()
    return build_model("convnet", SHAPE, CLASSES, seed=1, width=4, batchnorm=name == "convnet").double()


def _capture(name: str = "convnet", k: int = K) -> tuple[ClientUpdate, GroundTruth]:
    """One FedSGD step of a float64 client on ``k`` images (BatchNorm buffers sent), and its ground truth."""
    model = _model(name).train()
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(k, *SHAPE, generator=g, dtype=torch.float64) - MEAN[0]) / STD[0]
    y = torch.tensor([1, 3][:k])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers_before = {n: b.detach().clone() for n, b in model.named_buffers()}
    client = copy.deepcopy(model)
    opt = torch.optim.SGD(client.parameters(), lr=LR)
    F.cross_entropy(client(x), y).backward()
    opt.step()
    after = {n: p.detach().clone() for n, p in client.named_parameters()}
    buffers_after = {n: b.detach().clone() for n, b in client.named_buffers()}
    update = ClientUpdate("run", 1, 0, "fedsgd", before, after, lr=LR, local_epochs=1, local_steps=1,
                          batch_size=k, num_examples=k, buffers_before=buffers_before, buffers_after=buffers_after)
    return update, GroundTruth(1, 0, (x,), (y,))


def _public() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    return torch.rand(16, *SHAPE, generator=g, dtype=torch.float64), torch.arange(16) % CLASSES


def _spec() -> DataSpec:
    return DataSpec(SHAPE, CLASSES, MEAN, STD, public_aux=_public())


def _floats(value: Any) -> list[torch.Tensor]:
    """Every floating tensor in a value (tensors, dicts, lists)."""
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, dict):
        return [t for v in value.values() for t in _floats(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _floats(v)]
    return []


@pytest.mark.parametrize("method", sorted(LABEL_METHODS))
def test_every_label_method_runs_in_float64(method):
    update, truth = _capture()
    plan = AttackPlan(label_methods=(method,), inversion=None, seed=0)
    (res,) = attack_update(update, lambda: _model(), plan, _spec())
    assert isinstance(res, LabelResult)
    assert res.ok, res.error
    r = res.restoration
    assert r.labels.dtype == torch.long and len(r.labels) == K and int(r.counts.sum()) == K
    floats = _floats([r.probabilities, r.soft_labels, r.embeddings, dict(r.extras)])
    assert all(t.dtype == torch.float64 for t in floats), [(t.dtype, tuple(t.shape)) for t in floats]
    scores = score(res, truth, CLASSES, MEAN, STD)
    assert 0.0 <= scores["label_leacc"] <= 1.0 and "score_error" not in scores


def _tiny_prior():
    from fedsim.attacks.generative import train_prior

    return train_prior(images=_public()[0].float(), latent_dim=4, hidden=16, steps=3, batch_size=8, seed=0)


def _inversion_options(method: str) -> dict[str, Any]:
    if method == "ig-dpsgd":
        return {"clip_norm": 1.0}  # the DP-SGD clip norm a server configured (pipeline: from the update's record)
    if INVERSION_METHODS[method].kind == "generative":
        return {"prior": _tiny_prior(), "restarts": 1}
    return {}


@pytest.mark.parametrize("method", sorted(INVERSION_METHODS))
def test_every_inversion_method_attacks_and_scores_in_float64(method):
    """The whole attack-and-score path: fake gradient, labels, inversion, criterion, PSNR / SSIM and
    identifiability, all on a float64 model; the reconstruction stays float64."""
    model_name, k = SETUPS.get(method, ("convnet", K))
    update, truth = _capture(model_name, k)
    plan = AttackPlan(label_methods=("ilrg",), inversion=method, inversion_steps=2, seed=0,
                      inversion_options=_inversion_options(method))
    results = attack_update(update, lambda: _model(model_name), plan, _spec())
    inv = [r for r in results if isinstance(r, InversionResult)]
    assert len(inv) == 1 and inv[0].ok, inv[0].error
    rec = inv[0].reconstruction
    assert rec.dtype == torch.float64 and rec.shape[1:] == SHAPE and bool(torch.isfinite(rec).all())
    classifier = PublicClassifier(SHAPE[0], CLASSES).double()
    ident = Identify(classifier, _public()[0])
    scores = score(inv[0], truth, CLASSES, MEAN, STD, ident=ident)
    assert "score_error" not in scores, scores["score_error"]
    assert 0.0 < scores["psnr"] < 200.0 and -1.0 <= scores["ssim"] <= 1.0
    assert 0.0 <= scores["ident_class_acc"] <= 1.0 and 0.0 <= scores["ident_reid_acc"] <= 1.0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["ig-shadow", "ig", "gradinversion"])
def test_attack_and_score_on_cuda(method):
    """The live path on a GPU: the capture (host tensors) attacked with a cuda model by the dummy-forward label
    methods and an inversion, then scored (PSNR, SSIM, identifiability) without a score_error."""
    update, truth = _capture()
    labels = ("ilrg", "geng", "geng-bias", "llg+", "aux-nnls")
    plan = AttackPlan(label_methods=labels, inversion=method, inversion_steps=5, seed=0)
    results = attack_update(update, lambda: _model().float().cuda(), plan, _spec())
    assert all(r.ok for r in results), [(r.method, r.error) for r in results if not r.ok]
    classifier = PublicClassifier(SHAPE[0], CLASSES)
    for res in results:
        scores = score(res, truth, CLASSES, MEAN, STD, ident=Identify(classifier, _public()[0]))
        assert "score_error" not in scores, (res.method, scores["score_error"])
        if isinstance(res, InversionResult):
            assert res.reconstruction.is_cuda
            assert 0.0 < scores["psnr"] < 200.0 and scores["ident_reid_chance"] > 0.0
        else:
            assert res.restoration.labels.is_cuda and 0.0 <= scores["label_leacc"] <= 1.0


def test_ground_truth_unique_samples_in_float64_keep_first_visits():
    """GroundTruth.unique_samples deduplicates on the tensors' own device and dtype (it used ``.numpy()`` per
    sample: a CUDA ground truth failed there), each sample once in the order of its first visit."""
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(3, 1, 2, 2, generator=g, dtype=torch.float64), torch.randn(2, 1, 2, 2, generator=g,
                                                                                   dtype=torch.float64)
    steps = (a[:2], torch.cat([a[2:], a[:1], b]), torch.cat([b, a[1:2]]))
    labels = (torch.tensor([0, 1]), torch.tensor([2, 0, 3, 4]), torch.tensor([3, 4, 1]))
    x, y = GroundTruth(1, 0, steps, labels).unique_samples()
    assert x.dtype == torch.float64 and torch.equal(x, torch.cat([a, b])) and y.tolist() == [0, 1, 2, 3, 4]
