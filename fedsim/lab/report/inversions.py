"""Reconstructed images: every successful inversion's comparison grid, ordered by PSNR against the truth (for
reading only: no attacker could order them so), each update's attacker's pick marked, identifiability with chance."""

from __future__ import annotations

from fedsim.lab.report.chance import ident_words
from fedsim.lab.report.common import (MAX_GRIDS, cfg, e, embed_image, fmt, methods_in_order, or_q, ranked_inversions,
                                      setting)
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
    mark = " · <i>attacker's pick</i>" if picked else ""
    return (f'<figure>{img}<figcaption>{badge}<b>PSNR {fmt(r.psnr, ".1f")} dB · SSIM {fmt(r.ssim, ".2f")}</b> · '
            f'round {or_q(r.round)}, client {or_q(r.client)}, {or_q(r.method)}{mark}<br>{e(ident_words([r]))}<br>'
            f'{e(setting(r))}</figcaption></figure>')


def gallery(data: RunData) -> str:
    ranked = ranked_inversions(data.inversions)
    if not ranked:
        return '<p class="muted">No successful image reconstructions in metrics.jsonl.</p>'
    picks = {id(p.row) for p in attacker_picks(data.inversions,
                                               methods_in_order(data.inversions, cfg(data, "attack", "inversion")))}
    figs = [grid_figure(data, r, i, id(r) in picks) for i, r in enumerate(ranked[:MAX_GRIDS], 1)]
    more = ""
    if len(ranked) > MAX_GRIDS:
        more = f'<p class="muted">Showing the best {MAX_GRIDS} of {len(ranked)} reconstructions.</p>'
    return f'<div class="gallery">{"".join(figs)}</div>{more}'
