"""Issue 21, replay / sweep / output files: a crashed replayed attack is an attack_error row and the replay goes
on; an attack command that selects nothing is a one-line error; every output file is strict JSON (no Infinity)
and reads back; intervals of bounded metrics stay in range; a resumed sweep appends no duplicate rows; the run
folder is the one parser of capture names."""

import json
import math

import pytest

from fedsim.lab import cli
from fedsim.core.rows import AttackErrorRow, InversionRow, LabelRow, PrivacyRow, SkippedRow, row_from_json
from fedsim.core.runfolder import RunFolder
from tests.runfolder import make_run


def _strict(text: str) -> list[dict]:
    """Parse JSON lines refusing NaN / Infinity (what json.dumps(allow_nan=False) would have refused to write)."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines() if line.strip()]


def _replay_keys(run, kind) -> list[tuple]:
    return sorted((r.round, r.client, r.method) for r in RunFolder(run).rows(kind) if r.replay)


# ---- defect 8: replay dies on one failing attack ----------------------------------------------------------------
def test_a_crashing_attack_is_an_attack_error_row_and_every_later_capture_is_attacked(tmp_path, capsys):
    """The faults run in small: client 0's attack crashes in round 1 (the first capture), client 2's in round 2,
    and round 2 client 1's capture is unreadable. Every other capture is attacked; one line per failure, one line
    counting them, exit 1."""
    cfg, run = make_run(tmp_path / "run", rounds=2, **{"faults.enabled": True, "faults.attack_crash": "0:1,2:2",
                                                       "attack.label_methods": "ilrg", "run.num_rounds": 2})
    bad = RunFolder(run).capture(2, 1)
    bad.write_bytes(b"\x00 not safetensors")
    rc = cli.main(["attack", str(run), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1, err
    assert _replay_keys(run, LabelRow) == [(1, 1, "ilrg"), (1, 2, "ilrg"), (2, 0, "ilrg")]
    crashes = RunFolder(run).rows(AttackErrorRow)
    assert [(r.round, r.client, r.replay, r.ok) for r in crashes] == [(1, 0, True, False), (2, 2, True, False)]
    assert all("injected attack crash" in r.error for r in crashes)
    assert len(err) == 4, err  # crash, unreadable, crash, summary
    assert "round 1 client 0" in err[0] and str(bad) in err[1] and "round 2 client 2" in err[2]
    assert ("1 of 6 capture files unreadable" in err[3] and "2 of 5 attacks failed" in err[3]
            and "3 attacked" in err[3]), err[3]


def test_only_failures_make_the_replay_fail(tmp_path, capsys):
    """Crashes alone: AttackError exit 1 with the count; an attack that does not apply (ig-dpsgd without DP-SGD)
    is a skip: exit 0."""
    cfg, run = make_run(tmp_path / "run", **{"faults.enabled": True, "faults.attack_crash": "1"})
    assert cli.main(["attack", str(run), "--quiet", "--set", "attack.label_methods=rlg"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "fedsim: 1 of 3 attacks failed (attack_error / ok: false rows in metrics.jsonl); 2 attacked"
    rc = cli.main(["attack", str(run), "--quiet", "--set", "attack.label_methods=rlg", "--set",
                   "attack.inversion=ig-dpsgd", "--set", "attack.clients=0,2"])
    assert rc == 0, capsys.readouterr().err
    assert _replay_keys(run, SkippedRow) == [(1, 0, "ig-dpsgd"), (1, 2, "ig-dpsgd")]


def test_attack_error_row_round_trips_with_replay():
    row = AttackErrorRow(round=2, client=0, error="RuntimeError: x", method="ig", replay=True)
    assert row_from_json(json.loads(json.dumps(row.to_json(), allow_nan=False))) == row
    assert row_from_json({"kind": "attack_error", "round": 1, "client": 0, "error": "e"}).replay is None


# ---- defect 7: an attack command that selects nothing -----------------------------------------------------------
@pytest.mark.parametrize("setting, words", [
    ("attack.rounds=999", ["attack.rounds"]),  # outside run.num_rounds: refused at load
    ("attack.clients=99", ["attack.clients"]),
    ("attack.rounds=3", ["attack.rounds", "'3'", "rounds 1-2", "clients 0-2"]),  # a round without captures
    ("attack.clients=2", ["attack.clients", "'2'", "rounds 1-2", "clients 0-1"]),  # a client without captures
])
def test_an_attack_that_selects_nothing_is_a_one_line_error(tmp_path, capsys, setting, words):
    """The run was configured for 3 rounds, captured rounds 1-2; client 2's captures are gone."""
    cfg, run = make_run(tmp_path / "run", rounds=2, **{"run.num_rounds": 3})
    if setting.startswith("attack.clients=2"):
        for r in (1, 2):
            RunFolder(run).capture(r, 2).unlink()
    rc = cli.main(["attack", str(run), "--set", setting])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and all(w in err[0] for w in words), err
    assert not RunFolder(run).metrics.exists()


def test_rounds_and_clients_that_exist_but_never_together(tmp_path, capsys):
    cfg, run = make_run(tmp_path / "run", rounds=2, **{"run.num_rounds": 2})
    RunFolder(run).capture(2, 1).unlink()
    rc = cli.main(["attack", str(run), "--set", "attack.rounds=2", "--set", "attack.clients=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "attack.rounds, attack.clients" in err[0], err


# ---- defect 7: strict JSON, bounded intervals -------------------------------------------------------------------
def test_an_infinite_epsilon_is_strict_json_and_reads_back(tmp_path):
    from fedsim.core.config import ExperimentConfig
    from fedsim.lab.sweep import summarize

    folder = RunFolder(tmp_path)
    folder.append(PrivacyRow(round=1, epsilon=3.0, delta=1e-5, accountant="rdp"))
    folder.append(PrivacyRow(round=2, epsilon=math.inf, delta=1e-5, accountant="rdp"))
    folder.append(InversionRow(round=1, client=0, method="ig", ok=True, psnr=12.0, psnr_per_image=[12.0, math.inf]))
    lines = _strict(folder.metrics.read_text())
    assert lines[1]["epsilon"] == "inf"
    assert folder.rows(PrivacyRow)[1].epsilon == math.inf
    assert folder.rows(InversionRow)[0].psnr_per_image == [12.0, math.inf]
    assert summarize(tmp_path, ExperimentConfig())["epsilon"] == math.inf  # the worst round, not the last finite


def test_a_null_epsilon_of_an_older_file_is_no_guarantee(tmp_path):
    from fedsim.core.config import ExperimentConfig
    from fedsim.lab.sweep import summarize

    folder = RunFolder(tmp_path)
    folder.append(PrivacyRow(round=1, epsilon=3.0, delta=1e-5, accountant="rdp"))
    with folder.metrics.open("a") as fh:  # how append_jsonl wrote an infinite epsilon before
        fh.write('{"kind": "privacy", "round": 2, "epsilon": null, "delta": 1e-05, "accountant": "rdp"}\n')
    assert summarize(tmp_path, ExperimentConfig())["epsilon"] == math.inf


def test_sweep_jsonl_is_strict_json_and_read_sweep_maps_inf_back(tmp_path):
    """The DP-SGD sigma 0 point (no noise: epsilon inf) used to write `Infinity`."""
    from fedsim.lab.sweep import run_sweep
    from tests.test_sweep import _fake_runner, _sweep_file

    sweep = _sweep_file(tmp_path, "seeds = [0, 1]\n[[sweep.settings]]\nfamily = \"DP-SGD\"\nset = { "
                        '"defense.dp_sgd.enabled" = true, "defense.dp_sgd.noise_multiplier" = 0.0 }\n')
    rows = run_sweep(sweep, tmp_path / "out", runner=_fake_runner([]), reports=False)
    assert math.isinf(rows[0]["epsilon"])
    text = (tmp_path / "out" / "sweep.jsonl").read_text()
    assert _strict(text)[0]["epsilon"] == "inf"
    from fedsim.lab.sweep import read_sweep

    back = read_sweep(tmp_path / "out" / "sweep.jsonl")
    assert back[0]["epsilon"] == math.inf and back[0]["runs"][0]["epsilon"] == math.inf
    assert back[0]["setting"] == rows[0]["setting"]


def test_intervals_of_bounded_metrics_stay_in_their_range():
    """3 seeds of accuracy 1.0, 1.0, 0.9: the t-interval is 0.967 +- 0.143, i.e. up to 1.11 unclipped."""
    from fedsim.lab.sweep.summary import aggregate, t_interval

    m, lo, hi = t_interval([1.0, 1.0, 0.9])
    assert hi > 1.1  # the unclipped interval leaves [0, 1]
    seeds = [{"test_accuracy": a, "heldout_accuracy": a, "epsilon": None, "delta": None, "accountant": None,
              "dp_mechanism": None, "epsilon_source": None, "attacked_updates": 1, "lost_rounds": 0,
              "label_methods": {"ilrg": {"lnacc": ln, "leacc": ln}},
              "inversion_methods": {"ig": {"psnr": p, "ssim": s, "image": None}}}
             for a, ln, p, s in ((1.0, 0.0, 0.5, 0.99), (1.0, 0.0, 0.1, 1.0), (0.9, 0.1, 9.0, 0.6))]
    row = aggregate(seeds)
    for name, (low, high) in {"test_accuracy": (0, 1), "heldout_accuracy": (0, 1), "label_lnacc": (0, 1),
                              "label_leacc": (0, 1), "ssim": (-1, 1), "psnr": (0, math.inf)}.items():
        ci = row[f"{name}_ci"]
        assert low <= ci[0] <= row[name] <= ci[1] <= high, (name, ci)
    assert row["test_accuracy_ci"][1] == 1.0 and row["label_lnacc_ci"][0] == 0.0 and row["psnr_ci"][0] == 0.0
    assert row["test_accuracy_ci"][0] == pytest.approx(lo)  # the side inside the range is the t-interval's


# ---- defect 10: a resumed sweep appends no duplicate rows -------------------------------------------------------
@pytest.mark.parametrize("selection", [{"attack.clients": "1"}, {"attack.max_attacks": 2}])
def test_a_resumed_sweep_replays_nothing_twice(tmp_path, selection):
    """The run attacked client 1 only (or its first 2 updates): the sweep's replay decision, run twice on the
    folder, replays each selected capture once."""
    from fedsim.lab.sweep.execute import replay, replayed

    cfg, run = make_run(tmp_path / "run", rounds=2, **{"attack.inversion_steps": 2, "run.num_rounds": 2, **selection})
    for _ in range(2):
        replay(run, cfg, ("ig",))
        rows = RunFolder(run).rows_json()
        assert replayed(run, cfg) == {"ig"}
    keys = [(r["kind"], r["round"], r["client"], r["method"]) for r in rows]
    assert len(keys) == len(set(keys)) == 4  # 2 captures x (label, inversion)


def test_a_resumed_sweep_attacks_only_what_is_missing(tmp_path):
    """A replay cut short after the first capture: resuming attacks the other two only."""
    from fedsim.lab.sweep.execute import replay

    cfg, run = make_run(tmp_path / "run", **{"attack.inversion_steps": 2})
    cli.main(["attack", str(run), "--quiet", "--set", "attack.inversion=ig", "--set", "attack.label_methods=ilrg",
              "--set", "attack.max_attacks=1"])
    replay(run, cfg, ("ig",))
    assert _replay_keys(run, InversionRow) == [(1, 0, "ig"), (1, 1, "ig"), (1, 2, "ig")]
    assert len(RunFolder(run).rows(LabelRow)) == 3


def test_the_run_folder_lists_and_selects_captures(tmp_path):
    """One parser of capture names: a stray file under captures/ is not a capture (it crashed the replay)."""
    cfg, run = make_run(tmp_path / "run", rounds=2, **{"run.num_rounds": 2})
    folder = RunFolder(run)
    stray = folder.captures / "round_0001" / "client_old.safetensors"
    stray.write_bytes(b"")
    assert cli.main(["attack", str(run), "--quiet", "--set", "attack.label_methods=rlg"]) == 0
    assert len(folder.rows(LabelRow)) == 6
    assert [(c.round, c.client) for c in folder.capture_list()] == [(r, c) for r in (1, 2) for c in (0, 1, 2)]
    picked = folder.captures_selected(frozenset({2}), frozenset({0, 2}))
    assert [(c.round, c.client, c.path) for c in picked] == [(2, 0, folder.capture(2, 0)), (2, 2, folder.capture(2, 2))]
    assert len(folder.captures_selected(None, None, limit=4)) == 4
