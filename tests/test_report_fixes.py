"""Issue 23, run-report fixes: grid labels readable (no caption on top of another row's images), a chance
baseline next to each leakage headline (a uniform random label guess; the constant dataset-mean image), and
epsilon over rounds as a plot."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch


# ---- grid labels ---------------------------------------------------------------------------------------------

def test_grid_captions_and_row_labels_sit_clear_of_every_image(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from fedsim.evaluation.grids import save_comparison

    saved = {}
    real = Figure.savefig

    def savefig(self, *a, **k):
        saved["fig"] = self
        return real(self, *a, **k)
    monkeypatch.setattr(Figure, "savefig", savefig)
    torch.manual_seed(0)
    save_comparison(torch.rand(6, 1, 28, 28), torch.rand(6, 1, 28, 28), tmp_path / "g.png",
                    title="round 1, client 0: ig", psnr_per_image=[10.0 + i for i in range(6)])
    fig = saved["fig"]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [ax.get_window_extent(renderer) for ax in fig.axes]
    page = fig.bbox
    texts = [t for ax in fig.axes for t in (ax.xaxis.label, ax.yaxis.label, ax.title) if t.get_text()]
    assert sorted(t.get_text() for t in texts) == sorted(["truth", "recon"] + [f"{10.0 + i:.1f} dB" for i in range(6)])
    for t in texts:
        tb = t.get_window_extent(renderer)
        assert not any(tb.overlaps(b) for b in boxes), t.get_text()  # on no image, of any row
        assert page.x0 <= tb.x0 and tb.x1 <= page.x1 and page.y0 <= tb.y0 and tb.y1 <= page.y1, t.get_text()


# ---- chance baselines ------------------------------------------------------------------------------------------

def test_random_guess_label_chance_known_answers_and_monte_carlo():
    import random

    from fedsim.lab.report.chance import guess_scores

    one = guess_scores([1] + [0] * 9)  # 1 label of 10 classes: right with 1/10; counts / presence 0.1 + 0.9*0.9
    assert one == pytest.approx({"label_instacc": 0.1, "label_lnacc": 0.82, "label_leacc": 0.82})
    true = [3, 1, 0, 2, 0, 0, 1, 1, 0, 0]
    rng, n, k = random.Random(0), 20000, sum(true)
    mc = {"label_instacc": 0.0, "label_lnacc": 0.0, "label_leacc": 0.0}
    for _ in range(n):
        x = [0] * 10
        for _ in range(k):
            x[rng.randrange(10)] += 1
        mc["label_instacc"] += sum(min(a, b) for a, b in zip(x, true)) / k / n
        mc["label_lnacc"] += sum(a == b for a, b in zip(x, true)) / 10 / n
        mc["label_leacc"] += sum((a > 0) == (b > 0) for a, b in zip(x, true)) / 10 / n
    assert guess_scores(true) == pytest.approx(mc, abs=0.01)  # 3 standard errors of the simulation


def test_chance_psnr_is_the_dataset_mean_image_against_the_truth():
    from fedsim.evaluation.attacking import INVERSION_SCORES
    from fedsim.evaluation.scoring import chance_psnr

    white = torch.ones(3, 1, 4, 4)  # pixel 1.0 with mean 0.5 / std 0.5; the mean image is 0.5 grey: MSE 0.25
    assert chance_psnr(white, (0.5,), (0.5,)) == pytest.approx(10 * math.log10(4))
    half = torch.cat([torch.ones(1, 1, 4, 4), torch.full((1, 1, 4, 4), -0.6)])  # pixels 1.0 and 0.2 (MSE 0.09)
    assert chance_psnr(half, (0.5,), (0.5,)) == pytest.approx((10 * math.log10(4) + 10 * math.log10(1 / 0.09)) / 2)
    assert "psnr_chance" in INVERSION_SCORES  # it reaches the inversion rows


def test_headline_shows_each_attacks_chance_level(tmp_path):
    from fedsim.lab.report import write_report
    from fedsim.core.rows import InversionRow, LabelRow, UtilityRow
    from fedsim.core.runfolder import RunFolder

    folder = RunFolder(tmp_path)
    folder.append(UtilityRow(round=1, test_accuracy=0.5, test_loss=1.0))
    for c in (0, 1):
        folder.append(LabelRow(round=1, client=c, method="ilrg", ok=True, num_samples=1, label_instacc=1.0,
                               label_lnacc=1.0, label_leacc=1.0, true_counts=[1] + [0] * 9))
        folder.append(InversionRow(round=1, client=c, method="ig", ok=True, psnr=18.0, ssim=0.4,
                                   psnr_chance=7.0 + 0.68 * c))
    folder.append(InversionRow(round=1, client=0, method="old", ok=True, psnr=15.0, ssim=0.3))
    page = write_report(tmp_path).read_text()
    assert "random guess: 10% (counts 82%, presence 82%)" in page
    assert "blind guess (dataset-mean image) 7.3 dB" in page  # mean of 7.0 and 7.68
    assert "blind-guess PSNR not recorded" in page  # the method whose rows predate psnr_chance


# ---- epsilon over rounds ------------------------------------------------------------------------------------

def test_privacy_section_plots_epsilon_over_the_rounds(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from fedsim.lab.report import write_report
    from fedsim.core.rows import PrivacyRow
    from fedsim.core.runfolder import RunFolder

    figs = []
    real = Figure.savefig

    def savefig(self, *a, **k):
        figs.append(self)
        return real(self, *a, **k)
    monkeypatch.setattr(Figure, "savefig", savefig)
    eps = [0.5 * r ** 0.5 for r in range(1, 151)]
    for r, v in enumerate(eps, 1):
        RunFolder(tmp_path).append(PrivacyRow(round=r, epsilon=v, delta=1e-5, accountant="rdp", mechanism="dp_sgd"))
    page = write_report(tmp_path).read_text()
    assert 'alt="epsilon spent after each round"' in page and "ε per round (table)" in page
    lines = [ln for f in figs for ax in f.axes if ax.get_ylabel().startswith("ε spent") for ln in ax.lines]
    assert len(lines) == 1
    assert list(lines[0].get_xdata()) == list(range(1, 151)) and list(lines[0].get_ydata()) == pytest.approx(eps)
    other = tmp_path / "inf"
    RunFolder(other).append(PrivacyRow(round=1, epsilon=math.inf, delta=1e-5, accountant="rdp"))
    assert 'alt="epsilon spent after each round"' not in write_report(other).read_text()  # no finite ε: no plot
