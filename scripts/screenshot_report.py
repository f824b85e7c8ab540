#!/usr/bin/env python
"""Full-page screenshot of a run's report (or a sweep folder's sweep.html) with headless Chromium.

    python scripts/screenshot_report.py RUN_DIR OUT_PNG [--width 1280] [--height 3000] [--no-render]

Writes RUN_DIR/report.html first (unless --no-render and it already exists), then points Debian's
``/usr/bin/chromium`` (or $CHROMIUM) at it with networking features off and a throw-away profile. The window
height is the page height (Chromium's --screenshot captures the window, not the whole document), so pass a
larger --height for a long report or use --height 0 to estimate it from a first narrow pass (default).

A sweep folder's page is rebuilt first too (``fedsim report DIR``: sweep.jsonl and sweep.html from the runs' rows
with today's code). Beside the PNG it writes ``OUT_PNG.json`` (``fedsim.lab.screenshots``): the folder's headline
numbers as the page shows them, the date, this command, ``--note`` and a digest of the code that draws the page;
``tests/test_screenshots.py`` checks the docs' numbers and today's drawing code against it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path



def find_chromium() -> str:
    for cand in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and Path(cand).exists():
            return cand
    raise SystemExit("no chromium found (set $CHROMIUM)")


def png_size(path: Path) -> tuple[int, int]:
    with path.open("rb") as fh:
        head = fh.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


def _bottom_of_content(path: Path) -> int | None:
    """Last pixel row that is not the page background (needs Pillow); None if unknown."""
    try:
        from PIL import Image
    except ImportError:
        return None
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        w, h = rgb.size
        bg = rgb.getpixel((w - 1, h - 1))
        px = rgb.load()
        for y in range(h - 1, -1, -1):
            for x in range(0, w, 4):
                if px[x, y] != bg:
                    return y + 1
    return 0


def screenshot(html: Path, out: Path, width: int = 1280, height: int = 3000, timeout: float = 120.0) -> Path:
    chromium = find_chromium()
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fedsim-chromium-") as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
               f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={width},{height}",
               "--virtual-time-budget=3000", html.resolve().as_uri()]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                              env={**os.environ, "HOME": profile})
    if not out.exists():
        raise SystemExit(f"chromium wrote no screenshot (rc {proc.returncode}):\n{proc.stderr.decode()[-2000:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("out_png")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=0, help="window height; 0 = fit the page (two passes)")
    ap.add_argument("--max-height", type=int, default=16000)
    ap.add_argument("--no-render", action="store_true", help="use the existing report.html / sweep.html")
    ap.add_argument("--note", default="", help="said in the sidecar (e.g. why this folder was shot)")
    args = ap.parse_args(argv)
    run = Path(args.run_dir)
    from fedsim.lab.screenshots import code_digest, write_sidecar

    html = run / "report.html"
    kind = "report"
    if (run / "sweep.jsonl").exists() and not (run / "metrics.jsonl").exists():
        kind, html = "sweep", run / "sweep.html"  # a sweep folder
    digest = code_digest(kind)  # before rendering: an edit made meanwhile shows as a stale screenshot
    if kind == "sweep":
        if not (args.no_render and html.exists()):
            from fedsim.lab.sweep import summarize_folder

            html = summarize_folder(run)
    elif not (args.no_render and html.exists()):
        from fedsim.lab.report import write_report

        html = write_report(run)
    out = Path(args.out_png)
    if args.height > 0:
        screenshot(html, out, args.width, args.height)
    else:
        # first pass with a tall window, then crop the window to the content's bottom (+ margin)
        screenshot(html, out, args.width, args.max_height)
        bottom = _bottom_of_content(out)
        if bottom:
            screenshot(html, out, args.width, min(args.max_height, bottom + 40))
    w, h = png_size(out)
    print(f"{out} ({w}x{h})")
    version = subprocess.run([find_chromium(), "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, timeout=60).stdout.strip()
    command = "python scripts/screenshot_report.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    side = write_sidecar(out, run, kind, command, args.note, {"browser": version, "size": [w, h]}, digest)
    print(f"{side} (numbers and drawing-code digest)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
