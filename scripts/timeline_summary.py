#!/usr/bin/env python
"""Leakage timeline of a run folder as a Markdown table and a PNG (the report's timeline figure).

    python scripts/timeline_summary.py RUN_DIR [--png OUT.png] [--grids OUT.png]

Reads the run folder the way the report does (``fedsim.lab.report.load_run``: typed rows, a replayed row
supersedes an earlier one) and prints, per attacked round, the test accuracy of the model the clients trained
from (after the previous round), each label method's mean LnAcc / labels recovered and each inversion method's
mean PSNR / SSIM over the attacked clients. ``--grids`` stacks the best reconstruction grid of each stage (at
most six attacked rounds, first and last included) into one PNG (needs Pillow). Used for
docs/benchmarks/timeline.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path


from fedsim.lab import plots  # noqa: E402
from fedsim.lab.report import load_run  # noqa: E402
from fedsim.lab.report.common import mean, ok, ranked_inversions  # noqa: E402
from fedsim.lab.report.timeline import attacked_rounds, by_round, model_accuracy, stages  # noqa: E402


def _f(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def table(run_dir: Path) -> str:
    data = load_run(run_dir)
    acc = model_accuracy(data)
    labs, invs, by = by_round(data)
    head = ["round", "model acc."] + [f"{m} LnAcc / labels" for m in labs] + [f"{m} PSNR / SSIM" for m in invs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rnd in attacked_rounds(data):
        cells = [str(rnd), _f(acc.get(rnd - 1), ".3f")]
        for m in labs:
            rs = by.get((rnd, m, "label"), [])
            cells.append(f"{_f(mean(r.label_lnacc for r in rs), '.2f')} / {_f(mean(r.label_instacc for r in rs), '.2f')}")
        for m in invs:
            rs = by.get((rnd, m, "inversion"), [])
            cells.append(f"{_f(mean(r.psnr for r in rs), '.1f')} / {_f(mean(r.ssim for r in rs), '.2f')}")
        lines.append("| " + " | ".join(cells) + " |")
    final = max(acc) if acc else None
    lines.append("")
    lines.append(f"Final test accuracy (round {final}): {_f(acc.get(final), '.3f')}; best "
                 f"{_f(max(acc.values()) if acc else None, '.3f')}. Failed attacks: "
                 f"{len(data.failed) + len(data.attack_errors)}, skipped: {len(data.skipped)}.")
    return "\n".join(lines)


def stage_grids(run_dir: Path, out: Path) -> list[str]:
    """Stack the best reconstruction grid of each stage vertically; returns the image paths used."""
    from PIL import Image

    data = load_run(run_dir)
    paths = []
    for rnd in stages(attacked_rounds(data)):
        best = next(iter(ranked_inversions([r for r in data.inversions if r.round == rnd])), None)
        if best is not None and best.image and (run_dir / best.image).is_file():
            paths.append(best.image)
    images = [Image.open(run_dir / p).convert("RGB") for p in paths]
    if not images:
        return []
    width = max(im.width for im in images)
    canvas = Image.new("RGB", (width, sum(im.height for im in images)), "white")
    y = 0
    for im in images:
        canvas.paste(im, (0, y))
        y += im.height
    canvas.save(out)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--png", help="also write the timeline figure here")
    ap.add_argument("--grids", help="also write the best reconstruction of each stage here (stacked)")
    args = ap.parse_args(argv)
    run = Path(args.run_dir)
    print(table(run))
    if args.png:
        data = load_run(run)
        png = plots.timeline_plot(data.utility, [r for r in data.labels if ok(r)],
                                  [r for r in data.inversions if ok(r)])
        if png:
            Path(args.png).write_bytes(png)
            print(f"figure: {args.png}")
    if args.grids:
        print(f"grids: {args.grids} from {', '.join(stage_grids(run, Path(args.grids)))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
