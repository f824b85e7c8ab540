"""The end of a run: a short leakage summary instead of a line of accuracies, and no silent replacement of a
previous run (``--overwrite``). The federation itself is replaced by a stub that writes typed rows, so these
tests exercise the CLI's own code in a second or two."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.lab import cli
from fedsim.lab.run_summary import WIDTH, summary_lines
from fedsim.core.rows import InversionRow, LabelRow, PrivacyRow, UtilityRow
from fedsim.core.runfolder import MARK, RunFolder

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke.toml"


def _write_run(folder: Path, rounds: int = 80) -> None:
    """Rows of a finished run: accuracy rising then dipping, two attacked updates in round 1, one in 10."""
    rf = RunFolder(folder)
    rf.claim()
    for r in range(rounds + 1):
        acc = min(0.06 + 0.012 * r, 0.954) if r != rounds else 0.939
        rf.append(UtilityRow(round=r, test_accuracy=acc, test_loss=1.0))
    for rnd, client, lnacc in ((1, 0, 1.0), (1, 1, 0.8), (10, 0, 0.6)):
        rf.append(LabelRow(round=rnd, client=client, method="ilrg", ok=True, label_lnacc=lnacc, label_instacc=1.0,
                           label_leacc=1.0, true_counts=[8, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
        rf.append(InversionRow(round=rnd, client=client, method="ig", ok=True, psnr=15.0 + client, ssim=0.5,
                               psnr_chance=9.0))
    rf.append(PrivacyRow(round=rounds, epsilon=3.25, delta=1e-5, accountant="rdp"))


def test_summary_names_utility_attacks_leakage_beside_chance_and_the_report(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run)
    lines = summary_lines(run, run / "report.html")
    text = "\n".join(lines)
    best_round = next(r for r in range(81) if min(0.06 + 0.012 * r, 0.954) == 0.954)
    assert lines[0] == f"test accuracy: final 0.939 (round 80), best 0.954 (round {best_round})"
    assert lines[1] == "attacked updates: 3 (rounds 1, 10)"
    ilrg = next(line for line in lines if line.strip().startswith("ilrg"))
    # LnAcc mean (1.0 + 0.8 + 0.6) / 3; chance of counts exact for 8 labels of class 0 out of 10 classes:
    # (P(X0 = 8) + 9 P(Xi = 0)) / 10 with X ~ Binomial(8, 0.1)
    chance = (0.1 ** 8 + 9 * 0.9 ** 8) / 10
    assert f"LnAcc 0.80 (chance {chance:.2f})" in ilrg and "3 ran" in ilrg
    ig = next(line for line in lines if line.strip().startswith("ig "))
    assert "PSNR 15.3 dB (chance 9.0 dB)" in ig and "SSIM 0.50" in ig
    assert "epsilon 3.25 at delta 1e-05 (rdp) after round 80" in text
    assert lines[-1] == f"report:  {run / 'report.html'}"
    assert all(len(line) <= WIDTH for line in lines if str(tmp_path) not in line)
    assert len(text) < 800  # a summary, not the 1,573-character line of every round's accuracy


def test_summary_of_a_run_without_attacks_says_so(tmp_path: Path) -> None:
    rf = RunFolder(tmp_path / "r")
    rf.claim()
    rf.append(UtilityRow(round=0, test_accuracy=0.1, test_loss=2.3))
    rf.append(UtilityRow(round=1, test_accuracy=0.5, test_loss=1.3))
    lines = summary_lines(rf.root, None)
    assert lines[:2] == ["test accuracy: final 0.500 (round 1), best 0.500 (round 1)",
                         "attacked updates: none (attack.enabled = false, or nothing selected)"]
    assert not any(line.startswith("report:") for line in lines)


@pytest.fixture
def stub_federation(monkeypatch):
    """``run_federation`` replaced by a stub that prepares the folder (as the runner does) and writes rows."""
    import fedsim.lab.preflight
    import fedsim.lab.runner

    calls: list[Path] = []

    def fake(cfg, out, quiet=False, plan=None):  # plan: the preflight's attack plan (fedsim.core.resolved)
        _, folder = fedsim.lab.runner.prepare_run_dir(cfg, Path(out), plan)
        _write_run(folder, rounds=2)
        calls.append(folder)
        return folder

    monkeypatch.setattr(fedsim.lab.runner, "run_federation", fake)
    monkeypatch.setattr(fedsim.lab.preflight, "preflight", lambda cfg, run_dir=None: None)
    return calls


def test_run_prints_the_summary(tmp_path: Path, capsys, stub_federation) -> None:
    out = tmp_path / "run"
    assert cli.main(["run", str(SMOKE), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "test by round" not in printed and "test accuracy by round" not in printed
    assert printed.splitlines()[0] == "test accuracy: final 0.939 (round 2), best 0.939 (round 2)"
    assert "attacked updates: 3 (rounds 1, 10)" in printed and f"report:  {out.resolve() / 'report.html'}" in printed


def test_rerun_into_a_previous_run_is_refused_without_overwrite(tmp_path: Path, capsys, stub_federation) -> None:
    out = tmp_path / "run"
    assert cli.main(["run", str(SMOKE), "--out", str(out), "--quiet"]) == 0
    before = (out / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert cli.main(["run", str(SMOKE), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "--overwrite" in err, err
    assert (out / "metrics.jsonl").read_bytes() == before and len(stub_federation) == 1  # nothing ran or changed
    assert cli.main(["run", str(SMOKE), "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert len(stub_federation) == 2


def test_a_marked_folder_with_only_its_mark_is_no_previous_run(tmp_path: Path, stub_federation) -> None:
    out = tmp_path / "run"
    RunFolder(out).claim()
    assert (out / MARK).is_file()
    assert cli.main(["run", str(SMOKE), "--out", str(out), "--quiet"]) == 0


def test_demo_replaces_its_own_previous_run_by_design(tmp_path: Path, stub_federation) -> None:
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--quiet"]) == 0
    assert cli.main(["demo", "--out", str(out), "--quiet"]) == 0  # `make demo` twice
    assert len(stub_federation) == 2


def test_deploy_local_refuses_a_previous_run_too(tmp_path: Path, capsys) -> None:
    out = tmp_path / "dep"
    _write_run(out, rounds=1)
    rc = cli.main(["deploy-local", str(SMOKE), "--nodes", "3", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--overwrite" in err and str(out) in err
    assert not (out / ".flwr").exists()  # refused before anything started


def test_the_python_api_keeps_replacing_by_default(tmp_path: Path, stub_federation) -> None:
    import fedsim

    out = tmp_path / "nb"
    fedsim.run(SMOKE, out=out, report=False)
    fedsim.run(SMOKE, out=out, report=False)  # a notebook cell run twice
    with pytest.raises(fedsim.api.RunFolderError, match="--overwrite"):
        fedsim.run(SMOKE, out=out, report=False, overwrite=False)


def _plant_reid(folder: Path, hits_of_8: int, bound: float = 0.2, updates: int = 10) -> None:
    """Inversion rows of DP-SGD updates: each update's pick re-identified ``hits_of_8`` of its 8 images, beside the
    row's DP bound ``bound`` (chance 1 / 64)."""
    rf = RunFolder(folder)
    for u in range(updates):
        rf.append(InversionRow(round=1 + u, client=0, method="ig", ok=True, psnr=12.0, num_images=8,
                               ident_reid_acc=hits_of_8 / 8, ident_reid_chance=1 / 64, reid_bound=bound,
                               bound_mechanism="Gaussian sigma 1, 1 step(s), sensitivity 1 C (add/remove)"))


def test_a_run_reidentifying_above_its_dp_bound_fails_in_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """80 of 80 re-identified (95 % CP low 95.5 %) against a bound of 20 %: a calibration bug, exit 1, one line;
    20 of 80 (25 % [16, 36 %]) against 20 % is within its interval and passes."""
    import fedsim.lab.preflight
    import fedsim.lab.runner
    from fedsim.core.reconstruction_bound import BoundViolation
    from fedsim.lab.run_summary import check_bounds

    hits = {"n": 8}

    def fake(cfg, out, quiet=False, plan=None):  # plan: the preflight's attack plan (fedsim.core.resolved)
        _, folder = fedsim.lab.runner.prepare_run_dir(cfg, Path(out), plan)
        _write_run(folder, rounds=2)
        _plant_reid(folder, hits["n"])
        return folder

    monkeypatch.setattr(fedsim.lab.runner, "run_federation", fake)
    monkeypatch.setattr(fedsim.lab.preflight, "preflight", lambda cfg, run_dir=None: None)
    assert cli.main(["run", str(SMOKE), "--out", str(tmp_path / "bad"), "--quiet"]) == BoundViolation.exit_code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fedsim:")]
    assert len(err) == 1 and "re-identified 100 % of 80" in err[0] and "above the DP bound 20 %" in err[0]
    assert "calibration bug" in err[0]
    hits["n"] = 2
    assert cli.main(["run", str(SMOKE), "--out", str(tmp_path / "ok"), "--quiet"]) == 0
    check_bounds(tmp_path / "ok")  # no raise: 25 % [16, 36 %] straddles the 20 % bound
    with pytest.raises(BoundViolation):
        check_bounds(tmp_path / "bad")
