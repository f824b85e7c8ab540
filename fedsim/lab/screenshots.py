"""Provenance of the docs' screenshots (``docs/report.png``, ``docs/sweep.png``): a JSON sidecar beside each PNG.

``scripts/screenshot_report.py`` writes ``PNG.json`` next to the screenshot: which folder was shot, when and by
which command, the headline numbers as the page and the terminal show them (read from the folder's typed rows
through the report's and the end-of-run summary's own code, so a number here is the number on the image), and a
digest of the source files that draw the page. ``tests/test_screenshots.py`` compares the sidecar with the numbers
the docs state and with the digest of today's drawing code: a screenshot older than the code that draws it, or a
doc number from another run, fails there. Nothing here runs a browser or a federation.

Own code (no library records a page's provenance): a sha256 per file and one over the sorted (path, sha256) list.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Sequence

#: Source files (globs relative to the repository root) whose code decides what each page shows: the renderer,
#: its figures, the pick and the image grids, and for a sweep the aggregation from rows to ``sweep.jsonl`` and the
#: page. The screenshot script itself is not listed: it frames the page, it does not draw it.
DRAWING_CODE: dict[str, tuple[str, ...]] = {
    "report": ("fedsim/lab/report/*.py", "fedsim/lab/plots/*.py", "fedsim/lab/pick.py",
               "fedsim/evaluation/grids.py"),
    "sweep": ("fedsim/lab/sweep/page.py", "fedsim/lab/sweep/strips.py", "fedsim/lab/sweep/figures.py",
              "fedsim/lab/sweep/summary.py", "fedsim/lab/sweep/bound.py", "fedsim/lab/report/*.py",
              "fedsim/lab/plots/*.py", "fedsim/lab/pick.py", "fedsim/evaluation/grids.py"),
}

ROOT = Path(__file__).resolve().parents[2]


def sidecar_path(png: str | Path) -> Path:
    png = Path(png)
    return png.with_name(png.name + ".json")


def drawing_files(kind: str, root: Path = ROOT) -> list[str]:
    """The repository-relative paths of ``kind``'s drawing code, sorted; a kind not in :data:`DRAWING_CODE`
    fails with the valid ones."""
    if kind not in DRAWING_CODE:
        raise ValueError(f"page kind {kind!r}: expected one of {', '.join(DRAWING_CODE)}")
    paths = {p.relative_to(root).as_posix() for g in DRAWING_CODE[kind] for p in root.glob(g) if p.is_file()}
    return sorted(paths)


def code_digest(kind: str, root: Path = ROOT) -> dict[str, Any]:
    """``{"digest": sha256 over the sorted (path, file sha256) pairs, "files": {path: file sha256}}``."""
    files = {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in drawing_files(kind, root)}
    whole = hashlib.sha256("".join(f"{p}\0{h}\n" for p, h in sorted(files.items())).encode()).hexdigest()
    return {"digest": whole, "files": files}


def _cards(html: str) -> list[dict[str, str]]:
    """The headline cards as the page shows them (label, value, verdict), parsed from ``stat()``'s markup."""
    import html as _html

    out = []
    for m in re.finditer(r'<div class="stat[^"]*"><div class="label">(.*?)</div><div class="value">(.*?)</div>'
                         r'(?:<div class="verdict[^"]*">(.*?)</div>)?', html):
        out.append({"label": _html.unescape(m.group(1)), "value": _html.unescape(m.group(2)),
                    "verdict": _html.unescape(m.group(3) or "")})
    return out


def _r(v: Any, nd: int = 6) -> float | None:
    from fedsim.core.rows import finite_float

    f = finite_float(v)
    return None if f is None else round(f, nd)


def report_numbers(run_dir: str | Path) -> dict[str, Any]:
    """A run folder's headline numbers: the report's cards (text as drawn), the end-of-run summary lines, and the
    values behind them (final accuracy, per label method LnAcc and labels recovered with chance, per inversion
    method PSNR with the blind guess, the attacker's pick overall and per round with re-identification)."""
    from fedsim.lab.pick import attacker_picks
    from fedsim.lab.report.chance import identifiability, label_chance, psnr_chance
    from fedsim.lab.report.common import cfg, integer, mean, methods_in_order, ok
    from fedsim.lab.report.data import load_run
    from fedsim.lab.report.summary import headline
    from fedsim.lab.run_summary import summary_lines

    run = Path(run_dir)
    data = load_run(run)
    util = sorted((r for r in data.utility if integer(r.round) is not None and _r(r.test_accuracy) is not None),
                  key=lambda r: integer(r.round))
    labels = {}
    for m in methods_in_order(data.labels, cfg(data, "attack", "label_methods")):
        good = [r for r in data.labels if str(r.method) == m and ok(r)]
        chance = label_chance(good) or {}
        labels[m] = {"lnacc": _r(mean(r.label_lnacc for r in good)), "lnacc_chance": _r(chance.get("label_lnacc")),
                     "instacc": _r(mean(r.label_instacc for r in good)),
                     "instacc_chance": _r(chance.get("label_instacc")), "ran": len(good)}
    methods = methods_in_order(data.inversions, cfg(data, "attack", "inversion"))
    inversions = {}
    for m in methods:
        good = [r for r in data.inversions if str(r.method) == m and ok(r)]
        inversions[m] = {"psnr": _r(mean(r.psnr for r in good)), "psnr_chance": _r(psnr_chance(good)),
                         "ssim": _r(mean(r.ssim for r in good)), "ran": len(good)}
    chosen = [p.row for p in attacker_picks(data.inversions, methods)]

    def pick_of(rows: Sequence[Any]) -> dict[str, Any]:
        ident = identifiability(rows)
        return {"psnr": _r(mean(r.psnr for r in rows)), "psnr_chance": _r(psnr_chance(rows)),
                "ssim": _r(mean(r.ssim for r in rows)), "reid": _r(ident["ident_reid_acc"]),
                "reid_chance": _r(ident["ident_reid_chance"]), "class_named": _r(ident["ident_class_acc"]),
                "updates": len(rows), "methods": sorted({str(r.method) for r in rows})}

    rounds = sorted({integer(r.round) for r in chosen if integer(r.round) is not None})
    times = [t for t in (_r(getattr(r, "time", None), 3) for r in util) if t is not None]
    started = (_dt.datetime.fromtimestamp(min(times), _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
               if times else None)
    lines = [ln for ln in summary_lines(run, None) if not ln.startswith("results:")]
    return {
        "config": {"num_clients": cfg(data, "run", "num_clients"), "num_rounds": cfg(data, "run", "num_rounds"),
                   "algorithm": cfg(data, "train", "algorithm"), "batch_size": cfg(data, "train", "batch_size"),
                   "attack_rounds": cfg(data, "attack", "rounds"), "inversion": cfg(data, "attack", "inversion"),
                   "inversion_steps": cfg(data, "attack", "inversion_steps")},
        "attacked_clients": sorted({integer(r.client) for r in data.attacks if integer(r.client) is not None}),
        "attacked_rounds": sorted({integer(r.round) for r in data.attacks if integer(r.round) is not None}),
        "attacked_updates": len({(r.round, r.client) for r in data.attacks}),
        "run_started": started,  # the round-0 evaluation's time (utility rows carry one)
        "training_s": round(max(times) - min(times)) if times else None,  # round 0 to the last evaluated round
        "test_accuracy": {"first": _r(util[0].test_accuracy) if util else None,
                          "first_round": integer(util[0].round) if util else None,
                          "final": _r(util[-1].test_accuracy) if util else None,
                          "final_round": integer(util[-1].round) if util else None},
        "labels": labels,
        "inversions": inversions,
        "pick": pick_of(chosen),
        "pick_by_round": {str(k): pick_of([r for r in chosen if integer(r.round) == k]) for k in rounds},
        "cards": _cards(headline(data)),
        "summary": lines,
    }


def _sweep_points(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for line in (sweep_dir / "sweep.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def sweep_numbers(sweep_dir: str | Path) -> dict[str, Any]:
    """A sweep folder's points as its page's table shows them (``sweep.jsonl``, which ``fedsim report DIR``
    rebuilds from the runs' rows before the page): per setting the accuracy, the label method acted on and its
    LnAcc, the attacker's pick PSNR and re-identification with chance, epsilon, and the DP-bound rates."""
    sweep_dir = Path(sweep_dir)
    source = {}
    if (sweep_dir / "sweep_source.json").exists():
        source = json.loads((sweep_dir / "sweep_source.json").read_text(encoding="utf-8"))
    points = []
    for p in _sweep_points(sweep_dir):
        def bound(key: str) -> dict[str, Any] | None:
            b = p.get(key)
            return None if not b else {"rate": _r(b.get("rate")), "bound": _r(b.get("bound")),
                                       "hits": b.get("hits"), "trials": b.get("trials"), "line": b.get("line")}

        eps = p.get("epsilon")
        points.append({"label": p.get("label"), "setting": p.get("setting"), "seeds_run": p.get("seeds_run"),
                       "test_accuracy": _r(p.get("test_accuracy")), "label_method": p.get("label_best"),
                       "label_lnacc": _r(p.get("label_lnacc")), "pick_methods": p.get("inversion_picks"),
                       "psnr": _r(p.get("psnr")), "ident_reid_acc": _r(p.get("ident_reid_acc")),
                       "ident_reid_chance": _r(p.get("ident_reid_chance")),
                       "epsilon": eps if isinstance(eps, str) else _r(eps),
                       "bound_reid": bound("bound_reid"), "bound_oracle": bound("bound_oracle")})
    return {"sweep": source.get("name"), "sweep_file": Path(source["sweep_file"]).name if source.get("sweep_file")
            else None, "overrides": source.get("overrides"), "points": points}


def write_sidecar(png: str | Path, folder: str | Path, kind: str, command: str, note: str = "",
                  extra: dict[str, Any] | None = None, digest: dict[str, Any] | None = None) -> Path:
    """Write ``PNG.json``: the folder's numbers (:func:`report_numbers` or :func:`sweep_numbers`), the date, the
    command, the PNG's own sha256 and the drawing code's digest (``digest``: :func:`code_digest` taken before the
    page was rendered, so an edit made while it rendered shows as a stale screenshot; else taken now)."""
    png, folder = Path(png), Path(folder)
    numbers = report_numbers(folder) if kind == "report" else sweep_numbers(folder)
    try:
        shot_of = folder.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        shot_of = str(folder)
    doc = {"kind": kind, "png": png.name, "png_sha256": hashlib.sha256(png.read_bytes()).hexdigest(),
           "folder": shot_of, "made": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": command, "note": note, **(extra or {}), "numbers": numbers,
           "drawing_code": digest or code_digest(kind)}
    out = sidecar_path(png)
    out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return out


def read_sidecar(png: str | Path) -> dict[str, Any]:
    return json.loads(sidecar_path(png).read_text(encoding="utf-8"))
