"""A corpus of bad CLI inputs: each ends in one line on stderr, a non-zero exit, in seconds, and writes nothing
where nothing should be written (issue 14 item 5). In-process through ``fedsim.lab.cli.main`` (the same code the
``fedsim`` script runs), plus one real subprocess for the exit code of the installed entry point."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedsim.lab import cli
from tests.runfolder import make_run

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "smoke.toml")

CASES = {
    # name: (argv after the subcommand's folder placeholder {out}, expected exit code, words in the one line)
    "inversion typo": (["run", SMOKE, "--out", "{out}", "--set", "attack.inversion=igg"], 2, ["attack.inversion",
                                                                                               "'igg'", "ig"]),
    "label method typo": (["run", SMOKE, "--out", "{out}", "--set", "attack.label_methods=ilrg,ilgr"], 2,
                          ["attack.label_methods", "'ilgr'"]),
    "unknown key": (["run", SMOKE, "--out", "{out}", "--set", "train.lrr=0.1"], 2, ["train.lrr", "valid keys"]),
    "bad value": (["run", SMOKE, "--out", "{out}", "--set", "train.algorithm=fedprox"], 2,
                  ["train.algorithm", "fedsgd"]),
    "override without =": (["run", SMOKE, "--out", "{out}", "--set", "train.lr"], 2, ["--set", "section.key=value"]),
    "missing config": (["run", "configs/nope.toml", "--out", "{out}"], 2, ["nope.toml", "does not exist"]),
    "no cuda here": (["run", SMOKE, "--out", "{out}", "--set", "run.device=cuda:7"], 2, ["run.device"]),
    "dataset not installed": (["run", SMOKE, "--out", "{out}", "--set", "data.dataset=cifar100",
                               "--set", "data.data_dir=/nonexistent"], 1, ["cifar100"]),
    "report of a missing folder": (["report", "{out}"], 2, ["no such run folder"]),
    "deploy nodes contradict": (["deploy-local", SMOKE, "--nodes", "2", "--out", "{out}",
                                 "--set", "run.num_clients=3"], 2, ["--nodes"]),
    "deploy zero nodes": (["deploy-local", SMOKE, "--nodes", "0", "--out", "{out}"], 2, ["--nodes"]),
    "sweep parallel 0": (["sweep", str(ROOT / "configs" / "sweep_topk.toml"), "--out", "{out}", "--parallel", "0"],
                         2, ["--parallel"]),
    "attack on a non-run folder": (["attack", "{out}"], 2, ["not a run folder"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_nonzero_and_writes_nothing(name, tmp_path, capsys):
    argv, code, words = CASES[name]
    out = tmp_path / "out"
    start = time.monotonic()
    rc = cli.main([a.replace("{out}", str(out)) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == code, (rc, err)
    assert len(err) == 1 and err[0].startswith("fedsim: "), err
    assert all(w in err[0] for w in words), err[0]
    assert not out.exists()  # nothing written where nothing should be
    assert time.monotonic() - start < 30


def test_corrupt_capture_is_named_skipped_and_the_rest_attacked(tmp_path, capsys):
    cfg, run = make_run(tmp_path / "run")
    caps = sorted((run / "captures").rglob("*.safetensors"))
    caps[1].write_bytes(b"\x00garbage, not safetensors")
    rc = cli.main(["attack", str(run), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 2 and str(caps[1]) in err[0] and "1 of 3 capture files unreadable" in err[1], err
    from fedsim.core.rows import LabelRow
    from fedsim.core.runfolder import RunFolder
    attacked = {r.client for r in RunFolder(run).rows(LabelRow) if r.replay}
    assert attacked == {0, 2}


def test_installed_entry_point_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fedsim.lab.cli", "report", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert not (tmp_path / "missing").exists()
