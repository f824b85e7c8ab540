"""A reconstruction strip per sweep setting: what the inversions made of the *first* attacked update (lowest
round, then client) of the setting's first seed, one image per inversion method, the attacker's pick first (the
lowest criterion, :mod:`fedsim.lab.pick`: no ground truth).

The update is picked by its place in the run, never by a ground-truth score (the best-PSNR image would flatter
every defense); the scores are printed under each image for reading only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedsim.core.rows import InversionRow
from fedsim.core.runfolder import RunFolder


def first_update(run: Path, configured: str | None = None) -> list[InversionRow]:
    """The successful inversion rows (with an image) of the run's first attacked update, the attacker's pick
    first (``configured``: the inversion methods in config order, the pick's fallback); a replay row replaces the
    live row of the same method and update."""
    from fedsim.lab.pick import pick_one

    rows = {(r.method, r.round, r.client): r for r in RunFolder(run).rows(InversionRow)
            if r.ok and r.image and isinstance(r.round, int) and isinstance(r.client, int)}
    if not rows:
        return []
    where = min((rnd, client) for _, rnd, client in rows)
    picked = [r for (_, rnd, client), r in rows.items() if (rnd, client) == where]
    choice = pick_one(picked, configured)
    return sorted(picked, key=lambda r: (r is not choice.row, str(r.method)))


def full_link(run: Path, r: InversionRow, out: Path | None) -> str:
    """A link from the sweep page in ``out`` to the update's full grid (a batch over 16 images), or ""."""
    import os

    from fedsim.evaluation.grids import full_grid_of
    from fedsim.lab.report.common import e

    full = Path(run) / full_grid_of(str(r.image))
    if out is None or not full.is_file():
        return ""
    rel = os.path.relpath(full, out)
    return f' · <a href="{e(Path(rel).as_posix())}">full grid</a>'


def strip_html(row: dict[str, Any], out: Path | None = None) -> str:
    """One setting's strip (a placeholder when no run of it has a reconstruction image); ``out``: the sweep
    page's folder, for links to full grids."""
    from fedsim.lab.report.common import e, embed_image, fmt
    from fedsim.lab.sweep.summary import point_label

    from fedsim.lab.pick import pick_one

    figs, where = [], ""
    for run in row.get("runs", []):
        configured = (run.get("inversion_pick") or {}).get("configured") or row.get("inversion_best")
        picked = first_update(Path(run["run"]), configured)
        if not picked:
            continue
        where = f"seed {e(run['seed'])}, round {e(picked[0].round)}, client {e(picked[0].client)}"
        choice = pick_one(picked, configured)
        for r in picked:
            uri = embed_image(Path(run["run"]), r.image)
            img = (f'<img alt="{e(r.method)} reconstruction" src="{uri}">' if uri
                   else f'<div class="placeholder">image not found: {e(r.image)}</div>')
            badge = f' · <i>attacker\'s pick ({e(choice.rule)})</i>' if r is choice.row else ""
            figs.append(f'<figure>{img}<figcaption><b>{e(r.method)}</b>{badge} · PSNR {fmt(r.psnr, ".1f")} dB · '
                        f'SSIM {fmt(r.ssim, ".2f")}{ident_text(r)}{full_link(Path(run["run"]), r, out)}'
                        f'</figcaption></figure>')
        break
    body = (f'<div class="gallery">{"".join(figs)}</div>' if figs
            else '<div class="placeholder">no reconstruction image in this setting\'s runs</div>')
    sub = f' <span class="muted">· first attacked update: {where}</span>' if where else ""
    return (f'<div class="strip" data-setting="{e(row.get("index"))}"><h3>{e(point_label(row))}{sub}</h3>'
            f'{body}</div>')


def ident_text(r: InversionRow) -> str:
    """The row's identifiability with its chance levels (" · re-identified 0.38 (chance 0.002) · ..."), or ""."""
    from fedsim.lab.report.common import fmt

    parts = []
    for name, acc, chance in (("re-identified", r.ident_reid_acc, r.ident_reid_chance),
                              ("class named", r.ident_class_acc, r.ident_class_chance)):
        if acc is not None:
            parts.append(f"{name} {fmt(acc, '.2f')} (chance {fmt(chance, '.3f')})")
    return "".join(f" · {p}" for p in parts)
