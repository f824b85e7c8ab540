"""``fedsim sweep SWEEP.toml --out DIR [--parallel N]``: one federation per defense setting and seed; leakage of
the attacker's pick and utility side by side, with 95 % intervals over seeds and epsilon for every DP point.

Modules: :mod:`~fedsim.lab.sweep.spec` (sweep files, settings labelled in words), :mod:`~.execute` (parallel
runs, cache, replayed attacks, run reports), :mod:`~.progress` (run k of N, round, ETA), :mod:`~.summary`
(per-run measurements, the attacker's pick and the oracle upper bound, intervals, epsilon), :mod:`~.figures`,
:mod:`~.page`.

Writes ``DIR/<setting>/seed_S/`` (one run folder each, with its ``report.html``; ``<setting>`` names the
setting's overrides, e.g. ``update.topk_ratio=0.1``: :mod:`~.layout`), ``DIR/sweep.jsonl`` (one row
per setting in file order: ``label``, ``family``, ``setting`` (overrides), ``test_accuracy``, ``label_best`` (the
label method the server acts on, ``label_pick_rule`` says why) with ``label_lnacc`` / ``label_leacc``,
``inversion_best`` (the method the attacker picked most often; ``inversion_picks`` the counts, ``inversion_pick_rule``
the rule: lowest criterion, or the first configured method when no criterion was recorded) with ``psnr`` / ``ssim`` /
``ident_reid_acc`` / ``ident_class_acc`` and their chance levels ``ident_*_chance``, the labelled upper bound
``psnr_oracle`` / ``ident_reid_acc_oracle`` / ``label_lnacc_oracle`` (``label_oracle``; best by ground truth),
each with ``*_ci`` (95 % t-interval over seeds clipped to the metric's range, None for one seed) and ``*_values``
(per seed), ``label_by_method`` / ``psnr_by_method`` (every method's mean), ``epsilon`` / ``delta`` /
``accountant``, ``parameters`` (the swept keys of a ``parameters`` sweep) and ``runs`` (the per-seed summaries)),
``DIR/sweep_settings.png`` (the swept value on the x axis when it is a number; PSNR with the oracle line,
identifiability with chance), ``DIR/sweep_epsilon.png`` (accuracy and leakage against epsilon, when a setting
has a finite one), ``DIR/sweep_frontier.png`` and ``DIR/sweep.html`` (the run report's style: the table, the figures, a
reconstruction strip per setting, links to every run's report). ``sweep.jsonl`` is strict JSON: an
infinite epsilon (no noise) is the string ``"inf"`` (``fedsim.core.rows.encode_nonfinite``); :func:`read_sweep` reads
it back as a float.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedsim.lab.sweep.execute import Runner, default_runner, execute, per_seed_rows
from fedsim.lab.sweep.figures import plot_bound, plot_epsilon, plot_frontier, plot_settings
from fedsim.lab.sweep.page import write_html
from fedsim.lab.sweep.progress import Progress, RichProgress, SweepEvent
from fedsim.lab.sweep.spec import Setting, Sweep, describe, load_sweep
from fedsim.lab.sweep.summary import aggregate, point_label, summarize, t_interval
from fedsim.core.errors import FedsimError, RunFolderError
from fedsim.core.rows import decode_nonfinite, encode_nonfinite


def run_sweep(path: str | Path, out: str | Path, *, parallel: int = 1, runner: Runner | None = None,
              overrides: dict[str, Any] | None = None, quiet: bool = True, reports: bool = True,
              existing_only: bool = False, only: set[int] | None = None,
              progress: Progress | None = None, ray: str | None = None) -> list[dict[str, Any]]:
    """Run (or reuse, see :mod:`~.execute`) every setting x seed of the sweep file; returns the sweep rows.
    ``existing_only``: run nothing, summarise the finished runs (settings without one are left out); ``only``:
    run these setting indices only (the others are summarised from finished runs, if any); ``progress``: called
    with every :class:`~fedsim.lab.sweep.progress.SweepEvent` (run k of N, setting, seed, round, ETA); ``ray``: run
    the federations as Ray tasks on the cluster at this address (``auto`` or HOST:PORT; or the file's ``[sweep]
    ray``: :mod:`~.ray_pool`). Federations that did not finish: the others' rows are written, then
    :class:`SweepIncomplete` names them (a rerun runs only those)."""
    sweep = load_sweep(path, overrides, ray)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    runs = execute(sweep, out, runner or default_runner, parallel, quiet, reports=reports,
                   existing_only=existing_only, only=only, progress=progress, failed=failed)
    if only is not None:  # the other settings from the runs they already have
        runs = {**execute(sweep, out, runner or default_runner, 1, quiet, reports=False, existing_only=True),
                **runs}
    if existing_only and not runs:  # nothing to summarise: the sweep.jsonl / sweep.html there stay as they are
        raise RunFolderError(f"{out}: no finished run of sweep {sweep.name} (config as in {path}) to summarise")
    source = {"sweep_file": str(Path(path).resolve()), "overrides": overrides or {}, "name": sweep.name,
              "reference": sweep.reference}
    (out / SOURCE).write_text(json.dumps(source, indent=1, default=str) + "\n", encoding="utf-8")
    rows = write_outputs(sweep, out, per_seed_rows(sweep, runs))
    if failed:
        raise SweepIncomplete(f"{len(failed)} federation(s) of sweep {sweep.name} did not finish: {'; '.join(failed)}"
                              f"; the finished ones are in {out / 'sweep.jsonl'}; the same command runs only these")
    return rows


class SweepIncomplete(FedsimError):
    """Some federations of a sweep did not finish (failed, or lost with a cluster node); the message names them."""


#: how the sweep in a folder was run (sweep file, --set overrides): ``fedsim report DIR`` summarises it again
SOURCE = "sweep_source.json"


def is_sweep_folder(path: str | Path) -> bool:
    return (Path(path) / "sweep.jsonl").is_file() or (Path(path) / SOURCE).is_file()


def summarize_folder(out: str | Path) -> Path:
    """``fedsim report DIR`` for a sweep folder: ``--summarize-only`` with the sweep file and overrides it was run
    with (``sweep_source.json``), re-reading every finished run; without them (moved, or a sweep from before),
    the figures and ``sweep.html`` from the rows of ``sweep.jsonl``. Returns the page's path."""
    out = Path(out).resolve()
    source = json.loads((out / SOURCE).read_text(encoding="utf-8")) if (out / SOURCE).is_file() else {}
    sweep_file = Path(source.get("sweep_file", ""))
    if source and sweep_file.is_file():
        run_sweep(sweep_file, out, overrides=source.get("overrides") or None, existing_only=True)
        return out / "sweep.html"
    if not (out / "sweep.jsonl").is_file():
        raise RunFolderError(f"{out}: the sweep file {sweep_file} is gone and there is no sweep.jsonl to rebuild "
                             "sweep.html from")
    rows = read_sweep(out / "sweep.jsonl")
    name = source.get("name") or next((r.get("sweep") for r in rows if r.get("sweep")), out.name)
    return write_figures_and_page(rows, name, out, source.get("reference"))


def read_sweep(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``sweep.jsonl``, with ``"inf"`` / ``"-inf"`` back as floats (a setting's overrides as written)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append({k: v if k == "setting" else decode_nonfinite(v) for k, v in row.items()})
    return rows


def write_outputs(sweep: Sweep, out: Path, per_seed: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for s in sweep.settings:
        if not per_seed.get(s.index):
            continue
        row: dict[str, Any] = {"index": s.index, "sweep": sweep.name, "label": s.label, "family": s.family,
                               "setting": s.overrides, "parameters": list(sweep.parameters),
                               "replayed": list(s.replay)}
        row.update(aggregate(per_seed[s.index]))
        row["runs"] = per_seed[s.index]
        rows.append(row)
    with open(out / "sweep.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(encode_nonfinite(row), allow_nan=False) + "\n")
    write_figures_and_page(rows, sweep.name, out, sweep.reference)
    from fedsim.lab.sweep.bound import check_rows

    check_rows(rows)  # a measured rate above its DP bound beyond its interval: BoundViolation, exit 1 (outputs kept)
    return rows


def write_figures_and_page(rows: list[dict[str, Any]], name: str, out: Path,
                           reference: dict[str, float] | None = None) -> Path:
    """The plots and ``sweep.html`` of the sweep rows; returns the page's path."""
    (out / "sweep_epsilon.png").unlink(missing_ok=True)  # a DP plot of an earlier summary would outlive its rows
    (out / "sweep_bound.png").unlink(missing_ok=True)
    figures = [plot_settings(rows, name, out / "sweep_settings.png", reference),
               plot_epsilon(rows, name, out / "sweep_epsilon.png"),
               plot_frontier(rows, name, out / "sweep_frontier.png", reference),
               plot_bound(rows, name, out / "sweep_bound.png")]
    return write_html(rows, name, out, [f for f in figures if f is not None])


__all__ = ["SOURCE", "Progress", "RichProgress", "Setting", "Sweep", "SweepEvent", "SweepIncomplete", "aggregate", "describe",
           "is_sweep_folder", "load_sweep", "point_label", "read_sweep", "run_sweep", "summarize_folder",
           "summarize", "t_interval", "write_outputs"]
