"""Image grids as PNG: ground truth above reconstruction (or any list of rows), matplotlib with the Agg backend.

A comparison grid shows at most ``MAX_GRID_IMAGES`` images of an update, wrapped ``GRID_COLUMNS`` to a band (a
truth row above its reconstruction row), so that each stays legible in the report (64 images in one strip were
8 pixels wide); a larger batch's every image goes to the full grid beside it (:func:`full_grid_of`), which the
report links to.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch

MAX_GRID_IMAGES = 16  #: images of one update in the grid the report shows
GRID_COLUMNS = 8  #: images per band (a truth row above its reconstruction row)


def full_grid_of(image: str | Path) -> Path:
    """The full grid saved beside a capped one: ``images/r0001_c0000_ig.png`` -> ``images/r0001_c0000_ig_full.png``
    (relative stays relative)."""
    image = Path(image)
    return image.with_name(f"{image.stem}_full{image.suffix}")


def save_rows(rows: Sequence[torch.Tensor], path: str | Path, mean=(0.0,), std=(1.0,),
              row_labels: Sequence[str] | None = None, title: str | None = None,
              captions: Sequence[Sequence[str]] | None = None, cell_inches: float = 1.0) -> Path:
    """Save rows of images (each [K, C, H, W] in model space) as one PNG grid; returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from fedsim.core.metrics.images import to_pixels

    rows = [to_pixels(r, mean, std) for r in rows]
    n_rows = len(rows)
    n_cols = max(r.shape[0] for r in rows)
    label_w = 1.2 if row_labels else 0.0
    # a caption goes UNDER its image (as the x label), in room added for it: drawn above, it sat on the row above
    captioned = sum(1 for i in range(n_rows) if captions is not None and i < len(captions) and len(captions[i]))
    fig, axes = plt.subplots(n_rows, n_cols, squeeze=False,
                             figsize=(n_cols * cell_inches + label_w,
                                      n_rows * cell_inches + 0.22 * captioned + (0.4 if title else 0)))
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j >= row.shape[0]:
                continue
            img = row[j].permute(1, 2, 0).cpu().numpy()  # image saving: the host copy of the pixels
            if img.shape[-1] == 1:
                ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(img, interpolation="nearest")
            if captions is not None and i < len(captions) and j < len(captions[i]):
                ax.set_xlabel(captions[i][j], fontsize=7, labelpad=2)
        if row_labels:
            axes[i][0].set_ylabel(row_labels[i], fontsize=8, rotation=0, ha="right", va="center", labelpad=6)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_comparison(ground_truth: torch.Tensor, reconstruction: torch.Tensor, path: str | Path, mean=(0.0,),
                    std=(1.0,), permutation: Sequence[int] | None = None, title: str | None = None,
                    psnr_per_image: Sequence[float] | None = None) -> Path:
    """Ground-truth rows above the reconstruction rows (``GRID_COLUMNS`` images to a band); ``permutation`` (from
    image_metrics) aligns the latter. At most ``MAX_GRID_IMAGES`` images (the batch's first) in ``path``; a larger
    batch's every image also in :func:`full_grid_of` ``(path)``. Returns ``path``."""
    rec = reconstruction if permutation is None else reconstruction[list(permutation)]
    psnr_per_image = None if psnr_per_image is None else [float(v) for v in psnr_per_image]
    n = len(ground_truth)
    if n > MAX_GRID_IMAGES:
        _bands(ground_truth, rec, full_grid_of(path), mean, std, f"{title} (all {n} images)" if title
               else f"all {n} images", psnr_per_image)
        shown = f"the first {MAX_GRID_IMAGES} of {n} images (all in {full_grid_of(path).name})"
        title = f"{title}: {shown}" if title else shown
    k = min(n, MAX_GRID_IMAGES)
    return _bands(ground_truth[:k], rec[:k], path, mean, std, title,
                  None if psnr_per_image is None else psnr_per_image[:k])


def _bands(truth: torch.Tensor, rec: torch.Tensor, path: str | Path, mean, std, title: str | None,
           psnr_per_image: Sequence[float] | None) -> Path:
    rows, labels, captions = [], [], []
    for start in range(0, max(len(truth), 1), GRID_COLUMNS):
        cut = slice(start, start + GRID_COLUMNS)
        rows += [truth[cut], rec[cut]]
        labels += ["truth", "recon"]
        captions += [[], [f"{v:.1f} dB" for v in psnr_per_image[cut]] if psnr_per_image is not None else []]
    return save_rows(rows, path, mean, std, row_labels=labels, title=title,
                     captions=captions if psnr_per_image is not None else None)
