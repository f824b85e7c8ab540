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
