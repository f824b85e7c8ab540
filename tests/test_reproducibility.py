"""Reproducibility on CPU: the same config and seed give identical metrics (utility rows without ``time``).

Fast: two in-process runs of the training + aggregation + capture path (benchmarks/memory.py). Slow: two full
Flower simulations through ``fedsim run``."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fedsim.core.captures import iter_captures, load_update
from fedsim.core.config import load_config
from fedsim.core.results import read_jsonl

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "benchmarks" / "memory.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _utility(run: Path) -> list[dict]:
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "utility"]
    return sorted(({k: v for k, v in r.items() if k != "time"} for r in rows), key=lambda r: r["round"])


def test_inprocess_runs_are_identical(tmp_path):
    bench = _bench()
    cfg = load_config(ROOT / "configs" / "smoke.toml", {"data.max_examples_per_client": 100})
    a = bench.inprocess_federation(cfg, tmp_path / "a", rounds=2)
    b = bench.inprocess_federation(cfg, tmp_path / "b", rounds=2)
    assert _utility(a) == _utility(b) and len(_utility(a)) == 3
    for pa, pb in zip(iter_captures(a), iter_captures(b)):
        ua, ub = load_update(pa), load_update(pb)
        for name, t in ua.weights_after.items():
            assert torch.equal(t, ub.weights_after[name])
    other = bench.inprocess_federation(cfg.replace(**{"run.seed": 1}), tmp_path / "c", rounds=2)
    assert _utility(other) != _utility(a)  # the seed matters


@pytest.mark.slow
def test_two_simulations_give_identical_metrics(tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        proc = subprocess.run([sys.executable, "-m", "fedsim.lab.cli", "run", str(ROOT / "configs" / "smoke.toml"),
                               "--out", str(out), "--quiet", "--set", "data.max_examples_per_client=150"],
                              capture_output=True, text=True, timeout=400, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(out)
    assert _utility(runs[0]) == _utility(runs[1])
    assert len(_utility(runs[0])) == 3


def test_aggregate_does_not_depend_on_reply_arrival_order(tmp_path):
    """Ray delivers replies in any order; the curious strategy aggregates in client order, bit for bit."""
    import itertools

    from flwr.app import ArrayRecord, ConfigRecord
    from unittest.mock import Mock
    from flwr.serverapp.strategy import FedAvg

    from fedsim.server.strategy import CuriousStrategy, TrainSettings

    bench = _bench()
    cfg = load_config(ROOT / "configs" / "smoke.toml")
    model = bench.make_model(cfg)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    states = [{k: v + torch.randn(v.shape, generator=g) * 10 ** (i - 2) if v.is_floating_point() else v
               for k, v in sent.items()} for i in range(4)]
    results = []
    for perm in itertools.islice(itertools.permutations(range(4)), 0, 24, 5):
        strategy = CuriousStrategy(FedAvg(fraction_evaluate=0.0), run_id="r",
                                   parameter_names=[n for n, _ in model.named_parameters()],
                                   settings=TrainSettings("fedavg", 0.05, 1, 32, {}))
        strategy.inner.configure_train = Mock(return_value=[])
        list(strategy.configure_train(1, ArrayRecord(sent), ConfigRecord({}), Mock()))
        arrays, _ = strategy.aggregate_train(1, [bench._reply(states[i], 7 + 13 * i, i, 1, 1.0) for i in perm])
        results.append(arrays.to_torch_state_dict())
    for other in results[1:]:
        for k, v in results[0].items():
            assert torch.equal(v, other[k]), k
