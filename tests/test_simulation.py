"""A real Flower simulation (Ray backend) through `fedsim run`: rising accuracy, one capture per client and
round, ground truth in the audit folder, and no Flower process left behind."""

import subprocess
import sys
from pathlib import Path

import pytest

from fedsim.captures import iter_captures, load_update
from fedsim.results import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _flower_processes() -> set[str]:
    out = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    return {line for line in out.splitlines()
            if ("flower-superlink" in line or "flwr-simulation" in line) and " Z" not in line}


@pytest.mark.slow
def test_smoke_federation(tmp_path):
    before = _flower_processes()
    out = tmp_path / "smoke"
    proc = subprocess.run([sys.executable, "-m", "fedsim.cli", "run", str(ROOT / "configs" / "smoke.toml"),
                           "--out", str(out), "--quiet", "--set", "attack.enabled=false"],
                          capture_output=True, text=True, timeout=540, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "utility"]
    acc = [r["test_accuracy"] for r in sorted(rows, key=lambda r: r["round"])]
    assert len(acc) == 3 and acc[0] < acc[1] < acc[2]
    captures = list(iter_captures(out))
    assert len(captures) == 2 * 3
    rounds_clients = {(load_update(p).server_round, load_update(p).client_id) for p in captures}
    assert rounds_clients == {(r, c) for r in (1, 2) for c in range(3)}
    assert len(list((out / "audit").rglob("*.safetensors"))) == 6
    assert (out / "config.toml").exists()
    assert _flower_processes() <= before
