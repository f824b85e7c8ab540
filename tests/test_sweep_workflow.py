"""Issue 23, sweeps you can follow: progress events (run k of N, setting, seed, round, ETA), ``--only`` and
``--summarize-only``, setting folders named by their setting (and the old ``setting_XX`` layout still found),
the styled ``sweep.html`` (swept value on the x axis, epsilon plots, a reconstruction strip per setting) and
``fedsim report`` on a sweep folder. Fake runners only (no federation)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fedsim.lab.sweep import SweepEvent, run_sweep
from fedsim.core.rows import InversionRow, UtilityRow
from fedsim.core.runfolder import RunFolder
from tests.test_sweep import _fake_runner, _sweep_file


def _runner(calls: list | None = None):
    """The fake runner of test_sweep, writing config.toml the way prepare_run_dir does (so the cache finds it)."""
    from fedsim.core.config import to_toml

    fake = _fake_runner([] if calls is None else calls)

    def runner(cfg, out, quiet):
        fake(cfg, out, quiet)
        RunFolder(out).config.write_text(to_toml(cfg.replace(**{"run.out_dir": str(out.resolve())})))
        return out
    return runner


def _topk(tmp_path: Path, values: str = "[0.0, 0.5, 0.1]", seeds: str = "[0, 1]") -> Path:
    return _sweep_file(tmp_path, f'parameter = "defense.update.topk_ratio"\nvalues = {values}\nseeds = {seeds}')


# ---- step 1: progress -------------------------------------------------------------------------------------------

def test_progress_lists_every_run_k_of_n_in_order_with_an_eta(tmp_path):
    events: list[SweepEvent] = []
    run_sweep(_topk(tmp_path), tmp_path / "out", runner=_runner(), reports=False, progress=events.append)
    starts = [e for e in events if e.kind == "start"]
    done = [e for e in events if e.kind == "done"]
    assert [(e.k, e.n) for e in starts] == [(k, 6) for k in range(1, 7)]
    assert [(e.k, e.finished) for e in done] == [(k, k) for k in range(1, 7)]
    # seed-major: the 3 settings of seed 0, then those of seed 1; labels in words
    assert [(e.label, e.seed) for e in starts] == [("no defense", 0), ("top-k 50%", 0), ("top-k 10%", 0),
                                                   ("no defense", 1), ("top-k 50%", 1), ("top-k 10%", 1)]
    assert all(e.rounds is not None and e.rounds > 0 for e in starts)
    assert done[0].eta_s is not None and done[-1].eta_s == 0.0  # from the runs done; nothing left at the end
    again: list[SweepEvent] = []
    run_sweep(_topk(tmp_path), tmp_path / "out", runner=_runner(), reports=False, progress=again.append)
    assert [(e.kind, e.k) for e in again] == [("cached", k) for k in range(1, 7)]  # finished runs: not run again


def test_round_watcher_reports_the_rounds_a_running_federation_writes(tmp_path):
    from fedsim.lab.sweep.progress import RoundWatcher, Tracker

    events: list[SweepEvent] = []
    tracker = Tracker(1, 1, events.append)
    base = SweepEvent("start", 1, 1, "no defense", 0, str(tmp_path), rounds=3)
    with RoundWatcher(tracker, base, tmp_path, poll_s=0.02):
        for rnd in (1, 2, 3):
            RunFolder(tmp_path).append(UtilityRow(round=rnd, test_accuracy=0.1 * rnd, test_loss=1.0))
            time.sleep(0.25)
    assert [e.round for e in events if e.kind == "round"] == [1, 2, 3]


def _cli(monkeypatch, argv: list[str]) -> int:
    """``fedsim sweep ...`` with the fake runner in place of federations and no preflight."""
    import fedsim.lab.preflight
    import fedsim.lab.sweep
    from fedsim.lab.cli import main

    monkeypatch.setattr(fedsim.lab.sweep, "default_runner", _runner())
    monkeypatch.setattr(fedsim.lab.preflight, "preflight", lambda *a, **k: None)
    return main(argv)


def test_cli_shows_a_line_per_run_and_quiet_keeps_it_silent(tmp_path, capsys, monkeypatch):
    from fedsim.lab.sweep.progress import event_line

    ev = SweepEvent("done", 3, 12, "DP-SGD sigma 0.5, clip 1", 1, "x", seconds=250.0, eta_s=2250.0, finished=3)
    assert event_line(ev) == "[3/12] done    DP-SGD sigma 0.5, clip 1  seed 1  (4m10s; 3/12 finished, ETA 37m30s)"
    sweep = _topk(tmp_path, "[0.0, 0.5]", "[0]")
    assert _cli(monkeypatch, ["sweep", str(sweep), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "[1/2] done    no defense  seed 0" in out and "[2/2] done    top-k 50%  seed 0" in out
    assert _cli(monkeypatch, ["sweep", str(sweep), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "[1/2]" not in out and "acc=" not in out and "sweep.html" in out


# ---- step 2: --only and --summarize-only ------------------------------------------------------------------------

def _no_runs(cfg, out, quiet):
    raise AssertionError(f"--summarize-only ran a federation: {out}")


def test_only_by_index_or_label_runs_just_those_settings(tmp_path, monkeypatch, capsys):
    import fedsim.lab.preflight
    import fedsim.lab.sweep
    from fedsim.lab.cli import main

    calls: list = []
    monkeypatch.setattr(fedsim.lab.sweep, "default_runner", _runner(calls))
    monkeypatch.setattr(fedsim.lab.preflight, "preflight", lambda *a, **k: None)
    sweep = _topk(tmp_path, seeds="[0]")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "o"), "--quiet", "--only", "1"]) == 0
    assert [c.defense.update.topk_ratio for c in calls] == [0.5]
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "o"), "--quiet", "--only", "TOP-K 10%",
                 "--only", "0"]) == 0
    assert sorted(c.defense.update.topk_ratio for c in calls[1:]) == [0.0, 0.1]
    from fedsim.lab.sweep import load_sweep
    from fedsim.lab.sweep.layout import select

    assert select(load_sweep(sweep), ["update.topk_ratio=0.1", "no defense"]) == {2, 0}  # folder name, label
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "o"), "--only", "top-k 7%"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--only" in err and "'top-k 7%'" in err
    assert "0 = no defense" in err and "2 = top-k 10%" in err


def test_summarize_only_rebuilds_the_outputs_from_the_folders_and_runs_nothing(tmp_path, monkeypatch, capsys):
    from fedsim.lab.sweep import read_sweep

    sweep = _topk(tmp_path)
    out = tmp_path / "out"
    first = run_sweep(sweep, out, runner=_runner(), reports=False)
    for name in ("sweep.jsonl", "sweep.html", "sweep_settings.png"):
        (out / name).unlink()
    assert _cli(monkeypatch, ["sweep", str(sweep), "--out", str(out), "--summarize-only", "--quiet"]) == 0
    # _cli installed the fake runner; make sure nothing runs even so
    rows = run_sweep(sweep, out, runner=_no_runs, reports=False, existing_only=True)
    assert (out / "sweep.html").exists() and (out / "sweep_settings.png").exists()
    back = read_sweep(out / "sweep.jsonl")
    assert [r["label"] for r in back] == [r["label"] for r in first] == [r["label"] for r in rows]
    assert [r["psnr"] for r in back] == pytest.approx([r["psnr"] for r in first])
    capsys.readouterr()
    empty = tmp_path / "empty"
    assert _cli(monkeypatch, ["sweep", str(sweep), "--out", str(empty), "--summarize-only"]) == 2
    err = capsys.readouterr().err
    assert "no finished run" in err and not (empty / "sweep.jsonl").exists()


# ---- step 3: setting folders named by their setting ---------------------------------------------------------

def test_folders_are_named_by_the_swept_value_unique_and_stable(tmp_path):
    from fedsim.lab.sweep import load_sweep
    from fedsim.lab.sweep.layout import MAX_SLUG, setting_folders, slug

    rows = run_sweep(_topk(tmp_path, "[0.0, 0.5, 0.1]", "[0]"), tmp_path / "out", runner=_runner(), reports=False)
    runs = [Path(r["runs"][0]["run"]) for r in rows]
    assert [p.parent.name for p in runs] == ["update.topk_ratio=0", "update.topk_ratio=0.5", "update.topk_ratio=0.1"]
    assert all(p.name == "seed_0" and (p / "DONE").exists() for p in runs)
    dp = load_sweep(Path(__file__).resolve().parents[1] / "configs" / "sweep_dp.toml")
    names = setting_folders(dp)
    assert len(set(names.values())) == len(dp.settings)
    for s in dp.settings:  # every swept value is in the name, nothing outside a safe alphabet
        assert f"noise_multiplier={s.overrides['defense.dp_sgd.noise_multiplier']:g}" in names[s.index]
        assert f"train.lr={s.overrides['train.lr']:g}" in names[s.index]
        assert all(c.isalnum() or c in "._=,+-~" for c in names[s.index]) and len(names[s.index]) <= MAX_SLUG
    long = {f"defense.update.key_{i}": 0.123456 * i for i in range(12)}
    assert len(slug(long)) <= MAX_SLUG and slug(long) == slug(dict(long)) and slug(long) != slug({**long, "x": 1})
    assert slug({}) == "base" and slug({"data.partition": "a/b c"}) == "data.partition=a-b-c"
    twins = _sweep_file(tmp_path, 'seeds = [0]\n[[sweep.settings]]\nset = { "train.lr" = 0.1 }\n'
                        '[[sweep.settings]]\nset = { "train.lr" = 0.1 }\nlabel = "twin"\n'
                        '[[sweep.settings]]\nset = {}\n')
    assert list(setting_folders(load_sweep(twins)).values()) == ["train.lr=0.1", "train.lr=0.1_01", "base"]


def test_runs_of_the_old_setting_xx_layout_are_reused_or_rerun_with_a_warning(tmp_path, caplog):
    from fedsim.lab.sweep import load_sweep

    sweep_path = _topk(tmp_path, "[0.0, 0.5]", "[0]")
    sweep = load_sweep(sweep_path)
    out = tmp_path / "out"
    for s in sweep.settings:  # a sweep run before issue 23: DIR/setting_XX/seed_S
        _runner()(sweep.config(s, 0), out / f"setting_{s.index:02d}" / "seed_0", True)
    calls: list = []
    rows = run_sweep(sweep_path, out, runner=_runner(calls), reports=False)
    assert calls == [] and [Path(r["runs"][0]["run"]).parent.name for r in rows] == ["setting_00", "setting_01"]
    caplog.set_level("WARNING", logger="fedsim.sweep")
    rows = run_sweep(sweep_path, out, runner=_runner(calls), reports=False, overrides={"train.lr": 0.05})
    assert len(calls) == 2 and [Path(r["runs"][0]["run"]).parent.name for r in rows] == [
        "update.topk_ratio=0", "update.topk_ratio=0.5"]
    assert "setting_00/seed_0 (old layout) holds no finished run of this config: a new run goes to" in caplog.text


# ---- step 4: sweep.html -----------------------------------------------------------------------------------------

def _image_runner(calls: list | None = None):
    """_runner plus reconstruction grids: client 0 (the first attacked update) scores LOWER than client 1, so a
    strip picked by score would show client 1."""
    import numpy as np
    from matplotlib import pyplot as plt

    base = _runner(calls)

    def runner(cfg, out, quiet):
        base(cfg, out, quiet)
        folder = RunFolder(out)
        folder.images.mkdir(parents=True, exist_ok=True)
        for c, psnr in ((1, 30.0), (0, 12.0)):  # written in the other order: the first is by place, not by row
            name = f"images/r1_c{c}_ig.png"
            plt.imsave(out / name, np.full((4, 8), 0.2 + 0.6 * c), cmap="gray", vmin=0, vmax=1)
            folder.append(InversionRow(round=1, client=c, method="ig", ok=True, psnr=psnr, ssim=0.1, image=name))
        return out
    return runner


def _capture_figures(monkeypatch) -> dict[str, object]:
    from matplotlib.figure import Figure

    saved: dict[str, object] = {}
    real = Figure.savefig

    def savefig(self, fname, *a, **k):
        saved[Path(str(fname)).name] = self
        return real(self, fname, *a, **k)
    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def _xdata(fig) -> list[list[float]]:
    return [[float(x) for x in c.lines[0].get_xdata()] for ax in fig.axes for c in ax.containers]


def test_settings_plot_has_the_swept_numbers_on_the_x_axis(tmp_path, monkeypatch):
    saved = _capture_figures(monkeypatch)
    run_sweep(_topk(tmp_path, "[0.0, 0.5, 0.1]", "[0]"), tmp_path / "a", runner=_runner(), reports=False)
    fig = saved["sweep_settings.png"]
    assert _xdata(fig) and all(xs == [0.0, 0.1, 0.5] for xs in _xdata(fig))  # the swept values, in order
    assert fig.axes[0].get_xlabel() == "defense.update.topk_ratio"
    tables = _sweep_file(tmp_path, 'seeds = [0]\n[[sweep.settings]]\nset = {}\n'
                         '[[sweep.settings]]\nset = { "defense.update.topk_ratio" = 0.1 }\n')
    run_sweep(tables, tmp_path / "b", runner=_runner(), reports=False)  # no swept number: one category each
    fig = saved["sweep_settings.png"]
    assert all(xs == [0.0, 1.0] for xs in _xdata(fig))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["no defense", "top-k 10%"]


def test_dp_sweep_plots_accuracy_and_leakage_against_epsilon(tmp_path, monkeypatch):
    from fedsim.core.accounting import local_dp_epsilon

    saved = _capture_figures(monkeypatch)
    sweep = _sweep_file(tmp_path, 'parameters = ["defense.local_dp.enabled", "defense.local_dp.epsilon"]\n'
                        'values = [[false, 1.0], [true, 50.0], [true, 10.0]]\nseeds = [0]')
    run_sweep(sweep, tmp_path / "o", runner=_runner(), reports=False)
    fig = saved["sweep_epsilon.png"]
    eps = sorted(local_dp_epsilon(v, 1e-5, 2, 1e-5) for v in (50.0, 10.0))
    xs = _xdata(fig)
    assert len(xs) == 3 and all(x[:2] == pytest.approx(eps) and x[2] > eps[1] for x in xs)  # inf drawn right
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][-1] == "inf"
    assert "sweep_epsilon" in (tmp_path / "o" / "sweep.html").read_text()
    run_sweep(_topk(tmp_path, "[0.0, 0.5]", "[0]"), tmp_path / "o", runner=_runner(), reports=False)
    assert not (tmp_path / "o" / "sweep_epsilon.png").exists()  # no DP: no epsilon plot


def test_sweep_html_is_styled_fits_the_window_and_has_one_strip_per_setting(tmp_path):
    import re
    import struct

    from fedsim.lab.report.common import data_uri
    from fedsim.lab.report.style import CSS

    out = tmp_path / "o"
    rows = run_sweep(_topk(tmp_path, "[0.0, 0.5, 0.1]", "[0, 1]"), out, runner=_image_runner(), reports=False)
    page = (out / "sweep.html").read_text()
    assert CSS in page and 'name="viewport"' in page and ".figure img { max-width: 100%; }" in page
    width = struct.unpack(">I", (out / "sweep_frontier.png").read_bytes()[16:20])[0]
    assert width <= 1280  # and shown at most the page's width
    strips = re.findall(r'<div class="strip" data-setting="(\d+)">', page)
    assert strips == ["0", "1", "2"]
    for r in rows:  # the first attacked update (client 0, the lower PSNR), of the first seed
        first = Path(r["runs"][0]["run"]) / "images" / "r1_c0_ig.png"
        best = Path(r["runs"][0]["run"]) / "images" / "r1_c1_ig.png"
        assert data_uri(first.read_bytes()) in page and data_uri(best.read_bytes()) not in page
        assert r["best_image"] == str(first)  # sweep.jsonl names the same image (not the best-scoring one)
    assert page.count("first attacked update: seed 0, round 1, client 0") == 3


# ---- step 5: fedsim report on a sweep folder --------------------------------------------------------------------

def test_report_on_a_sweep_folder_rebuilds_sweep_html(tmp_path, capsys):
    import json
    import re

    from fedsim.lab.cli import main

    sweep = _topk(tmp_path, "[0.0, 0.5]", "[0]")
    out = tmp_path / "o"
    run_sweep(sweep, out, runner=_image_runner(), reports=False)
    (out / "sweep.html").unlink()
    RunFolder(Path(json.loads((out / "sweep.jsonl").read_text().splitlines()[1])["runs"][0]["run"])).append(
        InversionRow(round=1, client=0, method="gias", ok=True, psnr=5.0, image="images/r1_c0_ig.png", replay=True))
    assert main(["report", str(out)]) == 0  # with the sweep file it was run with: re-reads the runs
    assert capsys.readouterr().out.strip() == str((out / "sweep.html").resolve())
    page = (out / "sweep.html").read_text()
    assert len(re.findall(r'class="strip"', page)) == 2 and "<b>gias</b>" in page  # the new replay is in
    assert "gias" in (out / "sweep.jsonl").read_text()
    sweep.unlink()  # the sweep file is gone: rebuilt from sweep.jsonl's rows
    (out / "sweep.html").unlink()
    assert main(["report", str(out)]) == 0
    assert len(re.findall(r'class="strip"', (out / "sweep.html").read_text())) == 2
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 2  # neither a run nor a sweep folder
    assert "nor a sweep folder" in capsys.readouterr().err
