"""The CLI answers without the heavy stack: ``--help``, ``--version`` and config errors never import torch/flwr.

Each case runs in a fresh interpreter (``sys.modules`` of the test process already holds torch) and asserts on
``sys.modules`` after the call, not on a timing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import sys
from fedsim.lab.cli import main
try:
    code = main({argv!r})
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "flwr", "numpy") if m in sys.modules)
print("EXIT", code, "HEAVY", ",".join(heavy) or "-")
"""


def _probe(argv: list[str]) -> tuple[int, str, str]:
    """Run ``main(argv)`` in a fresh interpreter; return (exit code, heavy modules imported, stderr)."""
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    last = proc.stdout.strip().splitlines()[-1]
    _, code, _, heavy = last.split()
    return int(code), heavy, proc.stderr


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["run", "--help"], ["deploy-local", "--help"], ["demo", "--help"], ["attack", "--help"],
    ["sweep", "--help"], ["report", "--help"],
])
def test_help_does_not_import_torch(argv: list[str]) -> None:
    code, heavy, _ = _probe(argv)
    assert code == 0
    assert heavy == "-", f"fedsim {' '.join(argv)} imported {heavy}"


@pytest.mark.parametrize("override, key", [
    ("train.lr=-1", "train.lr"), ("train.nope=1", "train.nope"), ("capture.rounds=7", "capture.rounds"),
    ("train.min_train_nodes=9", "train.min_train_nodes"), ("faults.corrupt=x", "faults.corrupt"),
])
def test_config_error_does_not_import_torch(override: str, key: str) -> None:
    code, heavy, err = _probe(["run", "configs/smoke.toml", "--set", override])
    assert code == 2
    assert err.startswith(f"fedsim: config error: {key}:") and err.count("\n") == 1
    assert heavy == "-", f"a config error imported {heavy}"


def test_deploy_local_config_error_does_not_import_torch() -> None:
    code, heavy, err = _probe(["deploy-local", "configs/smoke.toml", "--nodes", "2", "--set", "train.lr=-1"])
    assert code == 2 and "train.lr" in err
    assert heavy == "-"


def test_version_is_the_package_version_without_torch(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    from fedsim.lab.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"fedsim {version('fedsim')}"
    code, heavy, _ = _probe(["--version"])
    assert code == 0 and heavy == "-"


def _listed(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    import json

    from fedsim.lab.cli import main

    assert main(["list", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_list_json_holds_every_registered_name(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    from fedsim.attacks.inversion import INVERSION_METHODS
    from fedsim.attacks.labels.registry import LABEL_METHODS
    from fedsim.core.config import ModelSection
    from fedsim.core.data import DATASETS
    from fedsim.core.defense.registry import DefenseSection
    from fedsim.core.models.zoo import MODELS

    got = {k: [e["name"] for e in v] for k, v in _listed(capsys).items()}
    assert got["labels"] == list(LABEL_METHODS)
    assert got["inversion"] == list(INVERSION_METHODS)
    assert {m.name for m in INVERSION_METHODS.values() if m.kind == "generative"} <= set(got["inversion"])
    assert got["datasets"] == list(DATASETS)
    assert got["models"] == list(MODELS)
    choices = next(f for f in dataclasses.fields(ModelSection) if f.name == "name").metadata["choices"]
    assert set(got["models"]) == set(choices)
    assert got["defenses"] == [f"defense.{f.name}" for f in dataclasses.fields(DefenseSection)]


def test_list_entries_have_a_summary_and_methods_a_paper(capsys: pytest.CaptureFixture[str]) -> None:
    listing = _listed(capsys)
    for kind, items in listing.items():
        for e in items:
            assert e["summary"] and "\n" not in e["summary"], f"{kind} {e['name']}: no one-line summary"
    for e in listing["labels"] + listing["inversion"]:
        assert e["paper"], f"{e['name']}: no paper"
    attacks = _listed(capsys, "attacks")
    assert list(attacks) == ["attacks"]
    assert len(attacks["attacks"]) == len(listing["labels"]) + len(listing["inversion"])


def test_list_text_names_every_entry(capsys: pytest.CaptureFixture[str]) -> None:
    from fedsim.lab.cli import main

    names = [e["name"] for e in _listed(capsys, "defenses")["defenses"]]
    assert main(["list", "defenses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "defenses:" and [ln.split()[0] for ln in lines[1:]] == names


def test_check_valid_config_prints_the_resolved_toml_with_full(capsys: pytest.CaptureFixture[str]) -> None:
    """The verdict first, the estimates, and the resolved TOML only behind --full (issue 34)."""
    import tomllib

    from fedsim.core.config import load_config
    from fedsim.lab.cli import main

    assert main(["check", "configs/smoke.toml", "--set", "train.lr=0.2", "--full"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "valid: configs/smoke.toml can run (preflight ok)"
    expected = load_config("configs/smoke.toml", {"train.lr": "0.2"}).to_nested()
    assert tomllib.loads(out.split("# resolved config:\n", 1)[1]) == expected
    assert "expected disk use (estimate)" in out and "time (estimate" in out


def test_check_json_and_disk_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from fedsim.lab.cli import main

    assert main(["check", "configs/smoke.toml", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True and doc["preflight"] == "ok"
    disk = doc["disk_estimate"]
    assert disk["captured_updates"] == 2 * 3  # smoke: 2 rounds x 3 clients, all captured
    assert disk["global_files"] == 2  # the global model once per round (fedsim.core.captures)
    assert disk["model_bytes"] > 0 and disk["capture_bytes"] == (
        6 * (disk["model_bytes"] + disk["header_bytes"]) + 2 * (disk["model_bytes"] + disk["global_header_bytes"]))
    assert disk["audit_files"] == 6 and disk["total_bytes"] == disk["capture_bytes"] + disk["audit_bytes"]


@pytest.mark.parametrize("overrides, expected", [
    ({}, 6), ({"capture.rounds": "1", "attack.enabled": "false"}, 3),
    ({"capture.rounds": "1,2", "capture.clients": "1,2", "attack.enabled": "false"}, 4),
    ({"capture.clients": "0", "attack.enabled": "false"}, 2),
    ({"capture.clients": "0"}, 6),  # smoke attacks every update, and the scheduler captures what it attacks
    ({"capture.enabled": "false", "attack.enabled": "false"}, 0), ({"capture.enabled": "false"}, 6), ({"run.num_clients": "10", "train.fraction_train": "0.5"}, 10),
    ({"attack.rounds": "2", "attack.clients": "1"}, 1),  # default capture: what the attack selects
    ({"attack.rounds": "2", "capture.rounds": "all", "capture.clients": "all"}, 6),
])
def test_captured_updates_known_answers(overrides: dict[str, str], expected: int) -> None:
    from fedsim.core.config import load_config
    from fedsim.lab.check import captured_updates

    assert captured_updates(load_config("configs/smoke.toml", overrides)) == expected


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_check_invalid_config_exits_2_with_one_line_and_no_torch(fmt: str) -> None:
    code, heavy, err = _probe(["check", "configs/smoke.toml", "--set", "train.lr=-1", "--format", fmt])
    assert code == 2
    assert err == "fedsim: config error: train.lr: -1.0 is below the minimum 1e-12\n"
    assert heavy == "-"


def test_check_preflight_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from fedsim.lab.cli import main

    assert main(["check", "configs/smoke.toml", "--set", "attack.inversion=nope"]) == 2
    captured = capsys.readouterr()
    verdict, *rest = captured.out.splitlines()
    assert verdict.startswith("invalid: configs/smoke.toml")  # the verdict first (issue 34)
    assert rest[0].startswith("# code: this config names no module of its own")  # then the code it imports
    assert all(line.startswith("# ") for line in rest)
    assert captured.err.startswith("fedsim: config error: attack.inversion: 'nope'") and captured.err.count("\n") == 1


def _arguments(parser, path: str = "fedsim"):
    """Every (command path, action) of ``parser`` and its sub-commands."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _arguments(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_argument_has_a_help_string() -> None:
    from fedsim.lab.cli import build_parser

    found = list(_arguments(build_parser()))
    commands = {path for path, _ in found}
    assert {"fedsim run", "fedsim demo", "fedsim attack", "fedsim report", "fedsim deploy-local", "fedsim check",
            "fedsim list", "fedsim sweep"} <= commands
    missing = [f"{path} {a.option_strings[0] if a.option_strings else a.dest}" for path, a in found
               if not (a.help or "").strip()]
    assert not missing, f"arguments without help: {missing}"


def test_sweep_config_error_does_not_import_torch(tmp_path: Path) -> None:
    code, heavy, err = _probe(["sweep", "configs/sweep_dp.toml", "--out", str(tmp_path), "--set", "train.lr=-1"])
    assert code == 2 and err.startswith("fedsim: config error: train.lr:")
    assert heavy == "-"


def test_dataset_and_device_errors_still_refused() -> None:
    """The torch-needing checks moved last still run: a bad dataset name or a missing CUDA device is refused."""
    from fedsim.core.config import load_config
    from fedsim.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^data\.dataset: 'nope' is not one of .*mnist_subset"):
        load_config("configs/smoke.toml", {"data.dataset": "nope"})
    with pytest.raises(ConfigError, match=r"^run\.device: 'tpu' is not one of"):
        load_config("configs/smoke.toml", {"run.device": "tpu"})



def test_check_a_sweep_file_checks_every_federation(capsys: pytest.CaptureFixture[str]) -> None:
    """``fedsim check`` on a sweep file (a ``[sweep]`` table; it used to fail with "unknown section 'sweep'")
    preflights each (setting, seed) and sums the disk estimate over the federations."""
    import json

    from fedsim.lab.cli import main

    assert main(["check", "configs/sweep_dp.toml", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True and doc["seeds"] == [0, 1, 2] and doc["federations"] == 4 * 3
    assert [s["index"] for s in doc["settings"]] == [0, 1, 2, 3]
    assert doc["settings"][0]["replay"] == ["ggl", "gias", "ig-dpsgd"]
    assert all(len(s["disk_estimates"]) == 3 for s in doc["settings"])  # one per seed: partitions follow it
    assert doc["total_bytes"] == sum(d["total_bytes"] for s in doc["settings"] for d in s["disk_estimates"])
    assert main(["check", "configs/sweep_dp.toml"]) == 0
    text = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("# ")]  # the code lines
    assert text[0] == "valid: configs/sweep_dp.toml can run: 12 runs, every one preflighted"
    assert text[1].startswith("sweep dp_sgd: 4 settings x 3 seeds (0, 1, 2) = 12 federations; preflight: ok")
    assert text[-1].startswith("time (estimate") and "12 runs at --parallel 1" in text[-1]
    assert len(text) == 1 + 1 + 4 + 1 + 1


def test_check_a_sweep_names_the_setting_that_fails(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from fedsim.lab.cli import main

    base = Path("configs/smoke.toml").resolve()
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'[sweep]\nname = "bad"\nbase = "{base}"\nparameters = ["attack.inversion"]\n'
                     'values = [["ig"], ["nope"]]\nseeds = [0]\n')
    assert main(["check", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedsim: config error: setting 1 (") and "attack.inversion: 'nope'" in err
    assert err.count("\n") == 1
