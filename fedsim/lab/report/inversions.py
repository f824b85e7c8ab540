"""Reconstructed images: every successful inversion's comparison grid, ordered by PSNR against the truth (for
reading only: no attacker could order them so), each update's attacker's pick marked, identifiability with chance.
Above them, the exact-recovery ceiling: the updates an exact attack (``spear``, ``spear++``, ``analytic-fc``)
recovered exactly (``exact_fraction``, fedsim.core.metrics.exact), whatever the heuristic attacks reached."""

from __future__ import annotations

from fedsim.lab.report.chance import ident_words
from fedsim.evaluation.grids import MAX_GRID_IMAGES, full_grid_of
from fedsim.lab.report.common import (MAX_GRIDS, cfg, e, embed_image, fmt, integer, methods_in_order, num, ok, or_q,
                                      ranked_inversions, setting)
from fedsim.lab.pick import attacker_picks
from fedsim.lab.report.data import RunData
from fedsim.core.rows import InversionRow


def grid_figure(data: RunData, r: InversionRow, rank: int | None = None, picked: bool = False) -> str:
    """One reconstruction grid with its scores and identifiability (a placeholder when its PNG is missing or not
    allowed); ``picked``: marked as the attacker's pick of its update."""
    uri = embed_image(data.run_dir, r.image)
    img = (f'<img alt="reconstruction round {e(r.round)} client {e(r.client)}" src="{uri}">' if uri
           else f'<div class="placeholder">image not found: {e(r.image or "none")}</div>')
    badge = f'<span class="rank">#{rank}</span>' if rank is not None else ""
    img += full_grid_link(data, r)
    mark = " · <i>attacker's pick</i>" if picked else ""
    if num(getattr(r, "exact_fraction", None)) is not None:
        mark += f" · exact {fmt(r.exact_fraction, '.0%')}"
    return (f'<figure>{img}<figcaption>{badge}<b>PSNR {fmt(r.psnr, ".1f")} dB · SSIM {fmt(r.ssim, ".2f")}</b> · '
            f'round {or_q(r.round)}, client {or_q(r.client)}, {or_q(r.method)}{mark}<br>{e(ident_words([r]))}<br>'
            f'{e(setting(r))}</figcaption></figure>')


def full_grid_link(data: RunData, r: InversionRow) -> str:
    """A link to the update's every image (:func:`fedsim.evaluation.grids.full_grid_of`, saved beside the grid
    of the first ``MAX_GRID_IMAGES``), or "" when the batch fitted in one grid. A relative link inside the run
    folder: it loads nothing, and works while report.html stays beside images/."""
    if not isinstance(r.image, str) or not r.image:
        return ""
    full = full_grid_of(r.image)
    try:
        root = data.run_dir.resolve()
        path = (data.run_dir / full).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return ""
    except (OSError, ValueError):
        return ""
    n = integer(getattr(r, "num_images", None))
    of = f" of {n}" if n is not None else ""
    return (f'<div class="grid-more">{MAX_GRID_IMAGES}{of} images shown · '
            f'<a href="{e(full.as_posix())}">the full grid{f" ({n} images)" if n is not None else ""}</a></div>')


EXACT_METHODS = ("spear", "spear++", "analytic-fc")


def exact_ceiling(rows) -> str:
    """The ceiling line: how many attacked updates an exact attack recovered whole (every image to max-abs pixel
    error < 1e-3) and how many in part; empty when no exact attack ran or none was scored."""
    exact = [r for r in rows if r.method in EXACT_METHODS and ok(r) and num(r.exact_fraction) is not None]
    if not exact:
        return ""
    updates = {(r.round, r.client) for r in exact}
    whole = {(r.round, r.client) for r in exact if num(r.exact_fraction) >= 1.0}
    part = {(r.round, r.client) for r in exact if 0.0 < num(r.exact_fraction) < 1.0} - whole
    methods = ", ".join(sorted({r.method for r in exact}))
    words = (f"<b>Exact-recovery ceiling</b> ({e(methods)}): {len(whole)} of {len(updates)} attacked updates are "
             f"recoverable exactly (every image to a max-abs pixel error below 1e-3), {len(part)} in part. ")
    words += ("Where an update is recoverable exactly, the best possible attack recovers the whole batch, whatever "
              "the heuristic attacks below reached." if whole else
              "No update was recovered whole: the ceiling is what the other attacks show.")
    return f'<p class="ceiling">{words}</p>'


def gallery(data: RunData) -> str:
    ranked = ranked_inversions(data.inversions)
    if not ranked:
        none = '<p class="muted">No successful image reconstructions in metrics.jsonl.</p>'
        return exact_ceiling(data.inversions) or none
    picks = {id(p.row) for p in attacker_picks(data.inversions,
                                               methods_in_order(data.inversions, cfg(data, "attack", "inversion")))}
    figs = [grid_figure(data, r, i, id(r) in picks) for i, r in enumerate(ranked[:MAX_GRIDS], 1)]
    more = ""
    if len(ranked) > MAX_GRIDS:
        more = f'<p class="muted">Showing the best {MAX_GRIDS} of {len(ranked)} reconstructions.</p>'
    return f'{exact_ceiling(data.inversions)}<div class="gallery">{"".join(figs)}</div>{more}'
