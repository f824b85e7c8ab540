"""Behaviour pin for refactors: the same seed gives the same ``metrics.jsonl`` as the committed golden file.

The golden file was written by ``python tests/test_golden_metrics.py`` before the architecture re-layering
(issue 13): the in-process training + aggregation + capture path of ``benchmarks/memory.py`` for the smoke preset,
then the evaluation layer's attack-and-score of every capture with label methods ``ilrg,gi`` (inversion is off:
its engine is tuned on purpose elsewhere). ``time``/``seconds`` are dropped; floats compare to 1e-6 relative so
that a different BLAS build does not fail the test, integers and label counts compare exactly.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "smoke_metrics.jsonl"
VOLATILE = {"time", "seconds"}


def produce(out: Path) -> list[dict]:
    """Train, capture, attack and score; return the run's rows without volatile fields, in a stable order."""
    from fedsim.config import load_config

    try:
        from fedsim.evaluation.attacking import attack_and_score
        from fedsim.runfolder import RunFolder
        rows_of = lambda p: [r for r in RunFolder(p).rows_json()]  # noqa: E731
    except ImportError:  # before the re-layering
        from fedsim.attacking import attack_and_score
        from fedsim.results import read_jsonl
        rows_of = lambda p: list(read_jsonl(Path(p) / "metrics.jsonl"))  # noqa: E731
    from fedsim.captures import iter_captures

    torch.set_num_threads(1)
    cfg = load_config(ROOT / "configs" / "smoke.toml", {"data.max_examples_per_client": 48,
                                                        "attack.label_methods": "ilrg,gi",
                                                        "attack.inversion": "none"})
    from tests.test_reproducibility import _bench

    _bench().inprocess_federation(cfg, out, rounds=2)
    rows = rows_of(out)
    for cap in sorted(iter_captures(out)):
        rows.extend(r.to_json() if hasattr(r, "to_json") else r for r in attack_and_score(cap, cfg.to_flat(), out))
    clean = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
    return sorted(clean, key=lambda r: (r["kind"], r.get("round", 0), r.get("client", -1), r.get("method", "")))


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


def test_same_seed_same_metrics_as_golden(tmp_path):
    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
    rows = json.loads(json.dumps(produce(tmp_path / "run")))  # through JSON, as the file holds them
    assert len(rows) == len(golden)
    assert {r["kind"] for r in golden} >= {"utility", "label"}
    for i, (got, want) in enumerate(zip(rows, golden)):
        _close(got, want, f"row {i} ({want['kind']})")


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        out = produce(Path(tmp) / "run")
    GOLDEN.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in out))
    print(f"wrote {len(out)} rows to {GOLDEN}")
