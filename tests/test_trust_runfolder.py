"""Run folders are owned (issue 21, defect 2) and one run folder whoever runs the apps (defect 9).

fedsim clears only a folder that carries its mark (``.fedsim-run``, written when it creates or takes an empty
folder); a non-empty folder without it is refused in one line (exit 2) with every file left in place.
``run.name`` is a plain name. The ServerApp, run by Flower from its installed copy of the app, and the ClientApps
write one absolute folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedsim.core.config import ConfigError, from_flat, load_config
from fedsim.core.errors import RunFolderError
from fedsim.lab.cli import main as cli_main
from fedsim.lab.runner import prepare_run_dir
from fedsim.core.runfolder import MARK, RunFolder

from tests.processes import processes_under

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.toml"


def _user_folder(root: Path) -> dict[Path, tuple[bytes, int]]:
    """A folder of a user's files whose names collide with run artefacts; returns content and mtime of each."""
    files = {
        "notes.txt": b"my notes\n", "images/holiday.png": b"\x89PNG not really", "logs/app.log": b"log line\n",
        "metrics.jsonl": b'{"mine": 1}\n', "captures/keep.bin": b"\x00\x01", "report.html": b"<p>mine</p>",
        "config.toml": b"[mine]\nx = 1\n",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.utime(root / "notes.txt", ns=(1_000_000_000, 1_000_000_000))  # an old mtime: any rewrite would show
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _unchanged(root: Path, before: dict[Path, tuple[bytes, int]]) -> None:
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}
    assert after == before  # same files (none added, none removed), same bytes, same mtimes


def test_run_refuses_a_folder_of_user_files_and_touches_nothing(tmp_path, capsys):
    out = tmp_path / "home"
    before = _user_folder(out)
    start = time.monotonic()
    rc = cli_main(["run", str(SMOKE), "--out", str(out), "--quiet"])
    seconds = time.monotonic() - start
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "not a fedsim run folder" in err and MARK in err, err
    _unchanged(out, before)
    assert not (out / MARK).exists() and not (out / ".flwr").exists()  # refused before Flower started
    assert seconds < 20


def test_deploy_local_refuses_it_too(tmp_path, capsys):
    out = tmp_path / "home"
    before = _user_folder(out)
    rc = cli_main(["deploy-local", str(SMOKE), "--nodes", "3", "--out", str(out), "--quiet"])
    assert rc == 2 and "not a fedsim run folder" in capsys.readouterr().err
    _unchanged(out, before)


@pytest.mark.parametrize("name", ["../x", "/x", "../../x", "a/b", "a\\b", "..", ".", ""])
def test_run_name_must_be_a_plain_name(name):
    with pytest.raises(ConfigError) as exc:
        from_flat({"run.name": name})
    msg = str(exc.value)
    assert msg.startswith("run.name:") and "plain name" in msg and "\n" not in msg


def test_run_name_in_a_preset_fails_at_load(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text(SMOKE.read_text().replace('name = "smoke"', 'name = "../escape"'))
    with pytest.raises(ConfigError, match=r"^run\.name: '\.\./escape'"):
        load_config(preset)
    assert from_flat({"run.name": "smoke-2.b_1"}).run.name == "smoke-2.b_1"  # plain names still load


def test_out_dir_may_point_anywhere():
    assert from_flat({"run.out_dir": "/tmp/elsewhere/../x"}).run.out_dir == "/tmp/elsewhere/../x"


def test_a_marked_folder_is_cleared_and_reused(tmp_path):
    cfg = from_flat({"run.name": "t", "data.dataset": "digits"})
    cfg, out = prepare_run_dir(cfg, tmp_path / "run")  # new folder: created and marked
    folder = RunFolder(out)
    assert folder.is_marked() and folder.config.is_file()
    for path in (folder.metrics, folder.done, folder.capture(1, 0), folder.audit_file(1, 0), folder.flower_log):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("old run\n")
    (out / "notes.txt").write_text("kept\n")  # not a run artefact: stays
    cfg2, out2 = prepare_run_dir(cfg, out)
    assert out2 == out and cfg2.run.out_dir == str(out)
    assert folder.is_marked() and folder.config.is_file()
    for gone in (folder.metrics, folder.done, folder.captures, folder.audit, folder.logs):
        assert not gone.exists(), gone
    assert (out / "notes.txt").read_text() == "kept\n"


def test_an_empty_folder_is_taken_and_a_file_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    RunFolder(empty).prepare()
    assert RunFolder(empty).is_marked()
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        RunFolder(afile).prepare()
    assert afile.read_text() == "x"


def test_clear_refuses_an_unmarked_folder(tmp_path):
    before = _user_folder(tmp_path / "u")
    with pytest.raises(RunFolderError, match="not a fedsim run folder"):
        RunFolder(tmp_path / "u").clear()
    _unchanged(tmp_path / "u", before)


def test_an_old_unmarked_run_folder_is_refused_with_the_way_out(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.toml").write_text("[run]\n")
    (old / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(RunFolderError, match="from before fedsim marked") as exc:
        RunFolder(old).prepare()
    assert "\n" not in str(exc.value) and (old / "metrics.jsonl").exists()
    (old / MARK).touch()  # what the message tells the user to do
    RunFolder(old).prepare()
    assert not (old / "metrics.jsonl").exists()
    mine = tmp_path / "mine"  # only artefact-like names, but nothing a run always writes: not told to delete it
    (mine / "images").mkdir(parents=True)
    (mine / "logs").mkdir()
    with pytest.raises(RunFolderError, match="a new or empty folder") as exc:
        RunFolder(mine).prepare()
    assert "delete" not in str(exc.value) and (mine / "images").is_dir()


def test_the_server_keeps_a_folder_the_runner_prepared(tmp_path):
    """The ServerApp's ``claim()`` accepts the marked folder and removes nothing (the runner's log is live)."""
    cfg, out = prepare_run_dir(from_flat({"run.name": "t", "data.dataset": "digits"}), tmp_path / "r")
    RunFolder(out).flower_log.parent.mkdir()
    RunFolder(out).flower_log.write_text("flwr run output\n")
    RunFolder(out).claim()
    assert RunFolder(out).flower_log.read_text() == "flwr run output\n" and RunFolder(out).config.is_file()
    user = tmp_path / "user"
    before = _user_folder(user)
    with pytest.raises(RunFolderError):
        RunFolder(user).claim()
    _unchanged(user, before)


def test_a_relative_run_dir_is_anchored_at_fedsim_root_or_the_cwd_never_the_package(tmp_path):
    """A process handed a relative ``run.out_dir`` (a config submitted by a bare ``flwr run``) anchors it at
    ``$FEDSIM_ROOT``, else at its working folder (``fedsim.core.paths``): never at the package's own folder
    (before: ``fedsim/runs/`` without an editable install) nor at Flower's copy of the app."""
    code = ("import fedsim.core.paths as p; from fedsim.core.config import from_flat; "
            "print(p.run_dir(from_flat({'run.name': 'smoke'})))")
    env = {k: v for k, v in os.environ.items() if k not in ("FEDSIM_ROOT", "PYTHONPATH")}
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert got.returncode == 0, got.stderr[-2000:]
    assert Path(got.stdout.strip()) == tmp_path / "runs" / "smoke"
    env["FEDSIM_ROOT"] = str(tmp_path / "elsewhere")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert Path(got.stdout.strip()) == tmp_path / "elsewhere" / "runs" / "smoke", got.stderr[-2000:]


@pytest.mark.slow
def test_flwr_native_writes_one_run_folder(tmp_path):
    """``make flwr-run`` (``python -m fedsim.lab.flwr_native``) end to end on the smoke preset, shrunk: the DONE
    file, metrics, captures and the clients' audit are in one folder, nothing under ``FLWR_HOME/apps/``."""
    home = tmp_path / ".flwr"
    env = {**os.environ, "FEDSIM_ROOT": str(tmp_path / "project")}  # runs/<name> lands in tmp, not the checkout
    sets = ["run.num_rounds=1", "data.max_examples_per_client=16", "attack.label_methods=ilrg",
            "attack.inversion_steps=2", "attack.max_inversion_images=4"]
    cmd = [sys.executable, "-m", "fedsim.lab.flwr_native", str(SMOKE), "3", str(home)]
    for s in sets:
        cmd += ["--set", s]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    finally:
        deadline = time.monotonic() + 30  # flwr-simulation exits on its own once its SuperLink is stopped
        while (leftover := processes_under(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.5)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = RunFolder(tmp_path / "project" / "runs" / "smoke")
    assert run.is_marked() and run.done.is_file()
    assert [r.round for r in run.rows() if getattr(r, "test_accuracy", None) is not None] == [0, 1]
    assert len(list(run.iter_captures())) == 3
    assert sorted(p.name for p in run.audit.glob("round_0001/*.safetensors")) == [
        f"client_{c:04d}.safetensors" for c in range(3)]
    assert load_config(run.config).run.out_dir == str(run.root)
    apps = home / "apps"
    written = [p for p in apps.rglob("*") if p.is_relative_to(apps) and "runs" in p.relative_to(apps).parts]
    assert written == []
    assert leftover == []
