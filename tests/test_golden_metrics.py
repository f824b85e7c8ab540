"""Behaviour pin for refactors: the same seed gives the same ``metrics.jsonl`` as the committed golden file, on the
production stack.

``produce`` runs the smoke preset as a user does: ``fedsim run configs/smoke.toml`` (a subprocess: preflight, a
private SuperLink, Flower's simulation engine with the production ServerApp and ClientApps; attacks off in the
server, 48 examples per client), then the evaluation layer's attack-and-score of every capture with the run's own
resolved ``config.toml`` and label methods ``ilrg,gi`` (inversion is off: its engine is tuned on purpose
elsewhere). The golden file ``tests/golden/smoke_metrics.jsonl`` was written by that path
(``python tests/test_golden_metrics.py``, issue 21); it replaced the file written by the in-process harness of
``benchmarks/memory.py`` (issue 13), whose utility and label rows it reproduces (the production server adds
``heldout_accuracy``). Smoke has no central DP, no SecAgg and no faults, so changes to those paths must leave every
row unchanged.

Determinism of that path: Ray returns the replies in any order, and ``CuriousStrategy`` hands them to FedAvg in
client order (``tests/test_reproducibility.py`` checks the aggregate bit for bit under permutations); each client
seeds its training from ``(run.seed, round, client)``. ``time``/``seconds`` are dropped; floats compare to 1e-6
relative so that a different BLAS build does not fail the test, integers and label counts compare exactly.
``defenses`` (every defense setting, recorded per capture) must equal the run's own configured ``defense.*``
values, and its switches (``*.enabled``, ``central_dp.clipping``, the ``update`` and ``training`` amounts) must
equal the golden ones: every mechanism stays off; the settings of a mechanism that is off (a new key, a changed
default) do not change behaviour and are not pinned to the file.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script to regenerate the golden file
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

from tests.processes import fedsim_run, processes_under  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "smoke_metrics.jsonl"
VOLATILE = {"time", "seconds"}
SETS = ("data.max_examples_per_client=48", "attack.enabled=false", "attack.label_methods=ilrg,gi",
        "attack.inversion=none")


def produce(out: Path) -> list[dict]:
    """Run the federation on the production apps, attack and score every capture; return the run's rows without
    volatile fields, in a stable order."""
    from fedsim.core.captures import iter_captures
    from fedsim.core.config import load_config
    from fedsim.evaluation.attacking import attack_and_score
    from fedsim.core.runfolder import RunFolder

    fedsim_run(ROOT / "configs" / "smoke.toml", out, *SETS, timeout=300)
    folder = RunFolder(out)
    cfg = load_config(folder.config)  # what the apps ran with
    rows = folder.rows_json()
    captures = sorted(iter_captures(out))
    assert len(captures) == 6, captures  # 3 clients x 2 rounds
    for cap in captures:
        rows.extend(r.to_json() for r in attack_and_score(cap, cfg.to_flat(), out))
    clean = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
    return sorted(clean, key=lambda r: (r["kind"], r.get("round", 0), r.get("client", -1), r.get("method", "")))


def _switches(defenses: dict) -> dict:
    """The settings that turn a defense on (or set its amount); the rest only matter once it is on."""
    return {k: v for k, v in defenses.items()
            if k.endswith(".enabled") or k == "defense.central_dp.clipping"
            or (k.startswith(("defense.update.", "defense.training.")) and k != "defense.update.sparsify_scope")}


def _check_defenses(rows: list[dict], golden: list[dict], configured: dict) -> None:
    """Recorded = configured for every defense key; the golden file's switches unchanged; then drop the field."""
    for got, want in zip(rows, golden):
        if "defenses" in want:
            assert got["defenses"] == configured, got["defenses"]
            assert _switches(got["defenses"]) == _switches(want["defenses"]), got
            got.pop("defenses"), want.pop("defenses")


def _close(a, b, path: str) -> None:
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), path
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.slow
def test_same_seed_same_metrics_as_golden(tmp_path):
    from fedsim.core.config import load_config

    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
    rows = json.loads(json.dumps(produce(tmp_path / "run")))  # through JSON, as the file holds them
    assert processes_under(tmp_path) == []
    flat = load_config(tmp_path / "run" / "config.toml").to_flat()
    configured = {k: v for k, v in json.loads(json.dumps(flat)).items() if k.startswith("defense.")}
    assert [(r["kind"], r.get("round"), r.get("client"), r.get("method")) for r in rows] == \
        [(r["kind"], r.get("round"), r.get("client"), r.get("method")) for r in golden]
    assert {r["kind"] for r in golden} == {"utility", "label"} and len(golden) == 3 + 6 * 2
    _check_defenses(rows, golden, configured)
    for i, (got, want) in enumerate(zip(rows, golden)):
        _close(got, want, f"row {i} ({want['kind']})")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = produce(Path(tmp) / "run")
    GOLDEN.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in out))
    print(f"wrote {len(out)} rows to {GOLDEN}")
