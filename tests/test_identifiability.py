"""Identifiability (``fedsim.evaluation.identify``): known answers for a perfect reconstruction and for noise,
chance levels equal to their definitions, the public classifier cached as safetensors, and the scores in a row."""

import pytest
import torch

from fedsim.evaluation.identify import (Identify, class_identifiability, classifier_path, identify_scores, predict,
                                        public_classifier, reid_pool, reidentification, train_classifier)


def _toy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """4 classes of 8 x 8 images in [0, 1]: the bright quadrant is the class, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.25 * torch.rand(n, 1, 8, 8, generator=g)
    for i, c in enumerate(y.tolist()):
        r, q = divmod(c, 2)
        x[i, 0, 4 * r:4 * r + 4, 4 * q:4 * q + 4] += 0.7
    return x.clamp(0, 1), y


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def classifier():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is faster on a shared CPU
    x, y = _toy(400, 0)
    model = train_classifier(x, y, 4, steps=40)
    torch.set_num_threads(before)
    return model


def test_a_perfect_reconstruction_is_reidentified_and_classified_as_well_as_the_truth(classifier):
    pool, _ = _toy(150, 1)
    x, y = _toy(12, 2)
    acc, chance = class_identifiability(classifier, x, y)
    assert acc == pytest.approx(float((predict(classifier, x) == y).float().mean()))  # the classifier's accuracy
    assert acc >= 0.9  # the toy task is easy: a trained classifier names the bright quadrant
    assert chance == pytest.approx(float(torch.bincount(y).max()) / 12)  # the majority-class share
    reid, reid_chance, size = reidentification(x.double(), x, pool)
    assert reid == 1.0 and size == 162 and reid_chance == pytest.approx(1 / 162)


def test_noise_is_reidentified_about_as_often_as_chance_and_classified_near_chance(classifier):
    pool, _ = _toy(300, 3)
    x, y = _toy(20, 4)
    noise = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    reid, chance, size = reidentification(noise.double(), x, pool)
    assert size == 320 and chance == pytest.approx(1 / 320)
    assert reid <= 0.1  # 20 guesses among 320: a hit or two at most by luck, far below the perfect 1.0
    acc, _ = class_identifiability(classifier, torch.full_like(x, 0.5), y)  # one constant image for all
    assert acc <= float(torch.bincount(y, minlength=4).max()) / 20 + 1e-9  # one guess for all: at most majority


def test_the_pool_holds_the_true_batch_once_and_is_capped():
    pool, _ = _toy(50, 6)
    x = pool[:5].clone()  # the client's batch comes from its own partition
    candidates = reid_pool(x, pool)
    assert len(candidates) == 50  # the 5 copies are not counted twice
    assert torch.equal(candidates[:5], x.double().flatten(1))  # the true batch first
    capped = reid_pool(x, pool, cap=20)
    assert len(capped) == 20 and torch.equal(capped[:5], x.double().flatten(1))
    _, chance, size = reidentification(x.double(), x, pool, cap=20)
    assert size == 20 and chance == pytest.approx(1 / 20)


def test_scores_use_the_alignment(classifier):
    x, y = _toy(6, 7)
    pool, _ = _toy(60, 8)
    perm = [5, 4, 3, 2, 1, 0]
    rec = x.flip(0)  # rec[perm[j]] == x[j]
    mean, std = (0.5,), (0.5,)
    norm = (x - 0.5) / 0.5
    ident = Identify(classifier, pool)
    out = identify_scores(norm.flip(0), perm, norm, y, mean, std, ident)
    assert out["ident_reid_acc"] == 1.0 and out["ident_reid_chance"] == pytest.approx(1 / 66)
    wrong = identify_scores(norm.flip(0), list(range(6)), norm, y, mean, std, ident)
    assert wrong["ident_reid_acc"] == 0.0  # the same images, matched to the wrong sources
    assert rec.shape == x.shape


def test_the_classifier_is_cached_as_safetensors(tmp_path):
    x, y = _toy(120, 9)
    path = classifier_path(tmp_path, "toy/set", x.shape[1:], 4)
    assert path.name == "toy_set_1x8x8_4.safetensors" and path.parent.name == "identify"
    first = public_classifier(x, y, 4, path, steps=5)
    assert path.is_file() and path.read_bytes()[8:9] == b"{"  # safetensors: 8-byte length then a JSON header
    second = public_classifier(x[:1], y[:1], 4, path, steps=5)  # loaded, not retrained on the one image
    probe = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(first(probe), second(probe))


def test_score_puts_identifiability_into_an_inversion_row(classifier):
    from fedsim.core.rows import InversionRow
    from fedsim.core.types import GroundTruth, InversionResult
    from fedsim.evaluation.attacking import INVERSION_SCORES
    from fedsim.evaluation.scoring import score

    x, y = _toy(4, 10)
    truth = GroundTruth(1, 0, (x,), (y,))
    res = InversionResult(0, 1, "ig", ok=True, labels=y.flip(0), reconstruction=x.flip(0).clone())
    pool, _ = _toy(40, 11)
    out = score(res, truth, 4, (0.0,), (1.0,), ident=Identify(classifier, pool))
    assert out["ident_reid_acc"] == 1.0 and out["ident_reid_chance"] == pytest.approx(1 / 44)
    assert out["ident_class_chance"] == pytest.approx(float(torch.bincount(y).max()) / 4)
    row = InversionRow(round=1, client=0, method="ig", ok=True, **{k: out[k] for k in INVERSION_SCORES if k in out})
    assert row.ident_reid_acc == 1.0 and row.ident_class_acc is not None
    assert "ident_reid_acc" not in score(res, truth, 4, (0.0,), (1.0,))  # no Identify: no identifiability
