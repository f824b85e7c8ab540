"""A reconstruction strip per sweep setting: what the inversions made of the *first* attacked update (lowest
round, then client) of the setting's first seed, one image per inversion method, the strongest method first.

The update is picked by its place in the run, never by a ground-truth score (the best-PSNR image would flatter
every defense); the scores are printed under each image for reading only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedsim.core.rows import InversionRow
from fedsim.core.runfolder import RunFolder


def first_update(run: Path, strongest: str | None = None) -> list[InversionRow]:
    """The successful inversion rows (with an image) of the run's first attacked update, ``strongest`` first; a
    replay row replaces the live row of the same method and update."""
    rows = {(r.method, r.round, r.client): r for r in RunFolder(run).rows(InversionRow)
            if r.ok and r.image and isinstance(r.round, int) and isinstance(r.client, int)}
    if not rows:
        return []
    where = min((rnd, client) for _, rnd, client in rows)
    picked = [r for (_, rnd, client), r in rows.items() if (rnd, client) == where]
    return sorted(picked, key=lambda r: (r.method != strongest, str(r.method)))


def strip_html(row: dict[str, Any]) -> str:
    """One setting's strip (a placeholder when no run of it has a reconstruction image)."""
    from fedsim.lab.report.common import e, embed_image, fmt
    from fedsim.lab.sweep.summary import point_label

    figs, where = [], ""
    for run in row.get("runs", []):
        picked = first_update(Path(run["run"]), row.get("inversion_best"))
        if not picked:
            continue
        where = f"seed {e(run['seed'])}, round {e(picked[0].round)}, client {e(picked[0].client)}"
        for r in picked:
            uri = embed_image(Path(run["run"]), r.image)
            img = (f'<img alt="{e(r.method)} reconstruction" src="{uri}">' if uri
                   else f'<div class="placeholder">image not found: {e(r.image)}</div>')
            figs.append(f'<figure>{img}<figcaption><b>{e(r.method)}</b> · PSNR {fmt(r.psnr, ".1f")} dB · SSIM '
                        f'{fmt(r.ssim, ".2f")}</figcaption></figure>')
        break
    body = (f'<div class="gallery">{"".join(figs)}</div>' if figs
            else '<div class="placeholder">no reconstruction image in this setting\'s runs</div>')
    sub = f' <span class="muted">· first attacked update: {where}</span>' if where else ""
    return (f'<div class="strip" data-setting="{e(row.get("index"))}"><h3>{e(point_label(row))}{sub}</h3>'
            f'{body}</div>')
