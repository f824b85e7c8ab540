"""The GPU check cannot pass broken (issue 33): ``benchmarks/check_run_rows.py`` refuses a run folder with a
``score_error`` row or an inversion row without PSNR / SSIM / identifiability, and passes a fully scored one;
``benchmarks/gpu_check.sh`` runs it on its live CUDA federation and scores on the device."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fedsim.core.rows import AttackErrorRow, InversionRow, LabelRow
from fedsim.core.runfolder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_run_rows", ROOT / "benchmarks" / "check_run_rows.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

GOOD = dict(round=1, client=0, method="ig-shadow", ok=True, psnr=18.2, ssim=0.61, ident_class_acc=1.0,
            ident_class_chance=0.5, ident_reid_acc=0.5, ident_reid_chance=0.01)


def _folder(tmp_path: Path, *rows) -> Path:
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    for row in rows:
        run.append(row)
    return run.root


def test_a_fully_scored_run_passes(tmp_path, capsys):
    run = _folder(tmp_path, LabelRow(round=1, client=0, method="ilrg", ok=True, label_leacc=1.0),
                  InversionRow(**GOOD), InversionRow(**{**GOOD, "client": 1}))
    assert check.main([str(run)]) == 0
    assert "2 inversion row(s), all scored" in capsys.readouterr().out


@pytest.mark.parametrize("bad, named", [
    (InversionRow(**{**GOOD, "client": 1, "psnr": None, "ssim": None, "score_error": "RuntimeError: Expected all "
                                                                                     "tensors on the same device"}),
     "client 1 method ig-shadow: score_error: RuntimeError"),
    (InversionRow(**{**GOOD, "client": 2, "psnr": None}), "client 2 method ig-shadow: missing psnr"),
    (InversionRow(**{**GOOD, "client": 3, "ident_reid_acc": None}), "client 3 method ig-shadow: missing ident_reid_acc"),
    (LabelRow(round=1, client=4, method="geng", ok=True, score_error="TypeError: cuda"), "client 4 method geng"),
    (InversionRow(round=1, client=5, method="ig", ok=False, error="RuntimeError: device"), "attack failed"),
    (AttackErrorRow(round=1, client=6, error="timed out after 60s"), "attack crashed"),
])
def test_a_planted_bad_row_fails_the_check_and_is_named(tmp_path, capsys, bad, named):
    run = _folder(tmp_path, InversionRow(**GOOD), bad)
    assert check.main([str(run)]) == 1
    err = capsys.readouterr().err
    assert "problem(s)" in err and named in err


def test_a_run_without_inversion_rows_or_rows_file_fails(tmp_path):
    assert check.main([str(_folder(tmp_path, LabelRow(round=1, client=0, method="ilrg", ok=True)))]) == 1
    assert check.main([str(tmp_path / "nowhere")]) == 1


def test_gpu_check_script_refuses_unscored_runs_and_scores_on_the_device():
    sh = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    assert "set -euo pipefail" in sh and "check_run_rows.py" in sh and "run.device=cuda" in sh
    assert "-m cuda" in sh and "nvidia-smi" in sh
    # a step piped through tee must fail when its command fails, not when tee does
    assert all('bash -c "set -o pipefail;' in line for line in sh.splitlines()
               if line.startswith("step ") and "bash -c" in line)
    py = (ROOT / "benchmarks" / "gpu_check.py").read_text()
    assert "x.cpu()" not in py  # the reconstruction is scored where it is (issue 33: it was moved first)
