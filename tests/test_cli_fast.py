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


@pytest.mark.parametrize("override, key", [("train.lr=-1", "train.lr"), ("train.nope=1", "train.nope")])
def test_config_error_does_not_import_torch(override: str, key: str) -> None:
    code, heavy, err = _probe(["run", "configs/smoke.toml", "--set", override])
    assert code == 2
    assert err.startswith(f"fedsim: config error: {key}:") and err.count("\n") == 1
    assert heavy == "-", f"a config error imported {heavy}"


def test_deploy_local_config_error_does_not_import_torch() -> None:
    code, heavy, err = _probe(["deploy-local", "configs/smoke.toml", "--nodes", "2", "--set", "train.lr=-1"])
    assert code == 2 and "train.lr" in err
    assert heavy == "-"
