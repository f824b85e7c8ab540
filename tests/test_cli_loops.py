"""Issue 34, closed loops of the CLI: the progress display shows the attack queue after training; ``fedsim attack``
ends like ``fedsim run`` (summary beside chance, replayed methods marked, report rewritten); ``fedsim check`` says
valid/invalid first and the resolved TOML only behind ``--full``; numbers in the terminal are rounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.core.rows import AttackErrorRow, InversionRow, LabelRow, SkippedRow
from fedsim.core.runfolder import RunFolder

ROOT = Path(__file__).resolve().parents[1]


# ---- the attack queue of the progress display -------------------------------------------------------------------
def _planted_queue(tmp_path: Path) -> RunFolder:
    """8 captured updates (rounds 1, 10, 30, 80 x clients 0, 1) and 2 more of client 2 the attack does not select;
    3 attacks finished (one crashed), the last an ig-shadow reconstruction of round 10 client 0."""
    folder = RunFolder(tmp_path / "run")
    for r in (1, 10, 30, 80):
        for c in (0, 1, 2):
            path = folder.capture(r, c)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    folder.append(LabelRow(round=1, client=0, method="ilrg", ok=True, label_lnacc=1.0))
    folder.append(InversionRow(round=1, client=0, method="ig-shadow", ok=True, psnr=21.04))
    folder.append(AttackErrorRow(round=1, client=1, error="RuntimeError: x"))
    folder.append(LabelRow(round=10, client=0, method="ilrg", ok=True, label_lnacc=0.5))
    folder.append(InversionRow(round=10, client=0, method="ig-shadow", ok=True, psnr=14.8361))
    folder.append(LabelRow(round=30, client=0, method="ilrg", ok=True, replay=True))  # a replay: not the queue
    return folder


def test_the_attack_queue_counts_k_of_n_and_names_the_last_method(tmp_path: Path) -> None:
    from fedsim.lab.attack_queue import attack_queue

    folder = _planted_queue(tmp_path)
    queue = attack_queue(folder, folder.rows(), frozenset({1, 10, 30, 80}), frozenset({0, 1}))
    assert (queue.done, queue.total, queue.finished) == (3, 8, False)
    assert queue.text() == "attacks 3 of 8 done; last: round 10 client 0, ig-shadow 14.8 dB"
    capped = attack_queue(folder, folder.rows(), None, frozenset({0, 1}), max_attacks=3)  # attack.max_attacks
    assert (capped.done, capped.total, capped.finished) == (3, 3, True)
    folder.append(SkippedRow(round=80, client=1, reason="attack queue full"))  # a dropped update is off the queue
    assert attack_queue(folder, folder.rows(), None, frozenset({0, 1})).text() == (
        "attacks 4 of 8 done; last: round 80 client 1, attack skipped")


def test_the_run_progress_shows_the_attack_queue_after_training(tmp_path: Path, monkeypatch) -> None:
    """``fedsim run``'s display (fedsim.lab.runner._progress) with the federation stubbed: once all rounds are in,
    it says "training done" and "attacks k of n done" while the queue drains."""
    import io

    from rich.console import Console

    import fedsim.lab.runner as runner
    from fedsim.core.config import from_flat
    from fedsim.core.rows import UtilityRow

    folder = _planted_queue(tmp_path)
    folder.append(UtilityRow(round=2, test_accuracy=0.9263333333333333, test_loss=0.25))
    cfg = from_flat({"run.num_rounds": 2, "attack.enabled": True, "attack.rounds": "all", "attack.clients": "0,1"})
    polls = iter([None, 0])

    class Proc:
        def poll(self):
            return next(polls)

    out = io.StringIO()
    import rich.progress

    real = rich.progress.Progress
    monkeypatch.setattr(rich.progress, "Progress", lambda *a, **k: real(
        *a, console=Console(file=out, width=160, force_terminal=False), **k))
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    runner._progress(folder.root, Proc(), cfg, quiet=False)
    text = out.getvalue()
    assert "2/2" in text and "test acc 0.926" in text
    assert "attacks 3 of 8 done; last: round 10 client 0, ig-shadow 14.8 dB" in text


# ---- fedsim attack ends like fedsim run -------------------------------------------------------------------------
def test_attack_ends_with_the_summary_beside_chance_and_a_fresh_report(tmp_path: Path, capsys) -> None:
    from fedsim.lab import cli
    from tests.runfolder import make_run

    _, run = make_run(tmp_path / "run", **{"attack.label_methods": "ilrg"})
    report = RunFolder(run).root / "report.html"
    report.write_text("stale")
    assert cli.main(["attack", str(run), "--set", "attack.label_methods=ilrg,gi"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ", 1)[0] for line in out[:3]] == ["round 1 client 0", "round 1 client 1", "round 1 client 2"]
    assert all("ilrg LnAcc " in line and "gi LnAcc " in line for line in out[:3]), out  # numbers, not ilrg:ok
    assert "replayed (fedsim attack): 3 updates, ilrg, gi" in out
    ilrg = next(line for line in out if line.strip().startswith("ilrg (replayed)"))
    assert "LnAcc " in ilrg and "(chance 0." in ilrg and "3 ran" in ilrg, ilrg
    assert any(line.strip().startswith("gi (replayed)") for line in out)
    assert out[-1] == f"report:  {report}"
    assert report.read_text() != "stale" and "ilrg" in report.read_text()


# ---- numbers in the terminal ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, text", [
    (0.9263333333333333, "0.926"), (0.0007500000937265801, "0.00075"), (14.83612, "14.8"), (1.0, "1"),
    (None, "-"), (3, "3"), (True, "True"), (1234.5678, "1235"), (float("inf"), "inf"), ("ilrg", "ilrg"),
])
def test_terminal_numbers_are_rounded(value, text) -> None:
    from fedsim.lab.terminal import num

    assert num(value) == text


def test_sweep_lines_print_rounded_numbers() -> None:
    from fedsim.lab.terminal import sweep_line

    row = {"label": "no defense", "test_accuracy": 0.9263333333333333, "label_best": "ilrg", "label_lnacc": 0.875,
           "inversion_best": "gias", "psnr": 14.83612, "ident_reid_acc": 0.25,
           "ident_reid_chance": 0.0007500000937265801, "psnr_oracle": 15.1234, "seeds_run": 3}
    line = sweep_line(row)
    assert "acc=0.926 " in line and "chance 0.00075;" in line and "psnr=14.8 " in line, line
    assert "0.92633" not in line and "0.000750000" not in line


# ---- fedsim check: the verdict first, the TOML behind --full ----------------------------------------------------
def test_check_says_valid_first_then_what_runs_and_no_toml_without_full(capsys) -> None:
    from fedsim.lab import cli

    assert cli.main(["check", "configs/smoke.toml", "--set", "train.lr=0.2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "valid: configs/smoke.toml can run (preflight ok)"
    assert lines[1] == "runs: 3 clients x 2 rounds of fedavg (3 trained per round); attacked updates: 6 (rounds 1, 2)"
    assert lines[2] == "methods: labels ilrg, ilrg-refine, gi; inversion ig (60 steps on 64 images)"  # FedAvg: 64
    assert lines[3].startswith("time (estimate, a simple model") and "about " in lines[3]
    assert lines[4].startswith("expected disk use (estimate)")
    assert "  train.lr = 0.2 (default 0.05)" in lines and "  run.num_rounds = 2 (default 3)" in lines
    assert not any(line.startswith("[") for line in lines)  # no TOML table: the resolved config is behind --full
    assert lines[-1] == "the full resolved config: fedsim check configs/smoke.toml --full"


def test_check_says_invalid_first(capsys) -> None:
    from fedsim.lab import cli

    assert cli.main(["check", "configs/smoke.toml", "--set", "train.lr=-1"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "invalid: configs/smoke.toml (exit 2; the error below)"
    assert err == "fedsim: config error: train.lr: -1.0 is below the minimum 1e-12\n"


def test_the_attack_queue_model_known_answers() -> None:
    """Attacks submitted at the end of their round, first come first served: one worker runs them one after the
    other, two at once; the run ends with training or with the last attack."""
    from fedsim.core.config import from_flat
    from fedsim.lab.check_plan import START_S, attacked_per_round, queue_end

    assert queue_end([(10.0, 5.0), (10.0, 5.0)], 1) == 20.0
    assert queue_end([(10.0, 5.0), (10.0, 5.0)], 2) == 15.0
    assert queue_end([(0.0, 5.0), (100.0, 5.0)], 1) == 105.0
    cfg = from_flat({"run.num_rounds": 4, "run.num_clients": 10, "train.fraction_train": 0.5,
                     "train.min_train_nodes": 2, "attack.enabled": True, "attack.rounds": "2,4",
                     "attack.clients": "0,1,2,3", "attack.max_attacks": 3})
    assert attacked_per_round(cfg) == [0.0, 2.0, 0.0, 1.0]  # 4 selected x 5/10 sampled, capped at 3 in all
    assert START_S > 0


def test_an_inversion_that_cannot_apply_is_said_and_costs_nothing() -> None:
    """FedAvg updates of 64 examples with attack.max_inversion_images = 16: the pipeline refuses them (not
    applicable), so the estimate prices no inversion and the methods line says why."""
    from fedsim.core.config import load_config
    from fedsim.lab.check_plan import LABEL_S, DEFAULT_LABEL_S, attack_seconds, methods_line

    cfg = load_config("configs/smoke.toml", {"attack.max_inversion_images": "16"})
    assert "not applicable" in methods_line(cfg)
    labels = sum(LABEL_S.get(m, DEFAULT_LABEL_S) for m in ("ilrg", "ilrg-refine", "gi"))
    assert attack_seconds(cfg, 1.0) == (labels, ())
