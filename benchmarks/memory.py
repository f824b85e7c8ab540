"""Benchmark: does memory grow with rounds? RSS of this process over many rounds of the in-process
training + aggregation + capture path (the ClientApp's local SGD, the curious strategy's validation, capture
to safetensors, FedAvg, central evaluation, metrics rows), without Flower's transport.

    .venv/bin/python benchmarks/memory.py [--rounds 50] [--clients 3] [--width 8] [--config configs/smoke.toml]

Prints one JSON object: RSS (MiB) after warm-up round 1, after rounds 10/25/50, and the slope of RSS over
the second half of the rounds (MiB per round; ~0 means no growth). Results: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import tempfile
import time
from pathlib import Path
from unittest.mock import Mock

ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

from fedsim.core.audit import write_ground_truth  # noqa: E402
from fedsim.core.config import ExperimentConfig, load_config  # noqa: E402
from fedsim.core.experiment import client_data, local_seed, make_model, test_data  # noqa: E402
from fedsim.core.rows import UtilityRow  # noqa: E402
from fedsim.core.runfolder import RunFolder  # noqa: E402
from fedsim.core.training import evaluate, train_locally  # noqa: E402
from fedsim.server.sinks import CaptureWriter  # noqa: E402
from fedsim.server.strategy import CuriousStrategy, TrainSettings  # noqa: E402


def _reply(state, num_examples: int, pid: int, steps: int, loss: float):
    msg = Mock(spec=Message)
    msg.content = RecordDict({"arrays": ArrayRecord(state),
                              "metrics": MetricRecord({"train_loss": loss, "num-examples": num_examples}),
                              "meta": ConfigRecord({"partition-id": pid, "local-steps": steps})})
    msg.has_error.side_effect = lambda: False
    msg.has_content.side_effect = lambda: True
    msg.metadata = Mock(src_node_id=1000 + pid)
    return msg


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inprocess_federation(cfg: ExperimentConfig, out: Path, rounds: int | None = None, capture: bool = True,
                         on_round=None) -> Path:
    """The training/aggregation path of a federation in one process; writes metrics.jsonl (+ captures, audit)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rounds = rounds or cfg.run.num_rounds
    t = cfg.train
    model = make_model(cfg)
    names = [n for n, _ in model.named_parameters()]
    sinks = [CaptureWriter(out)] if capture else []
    strategy = CuriousStrategy(FedAvg(fraction_evaluate=0.0), run_id="inprocess", parameter_names=names,
                               settings=TrainSettings(t.algorithm, t.lr, t.local_epochs, t.batch_size, {}),
                               sinks=sinks, run_folder=RunFolder(out))
    strategy.inner.configure_train = Mock(return_value=[])
    x_test, y_test = test_data(cfg)
    data = [client_data(cfg, c, cfg.run.num_clients) for c in range(cfg.run.num_clients)]
    global_state = {k: v.clone() for k, v in model.state_dict().items()}

    def central(server_round: int) -> None:
        model.load_state_dict(global_state)
        acc, loss = evaluate(model, x_test, y_test)
        RunFolder(out).append(UtilityRow(round=server_round, test_accuracy=acc, test_loss=loss, time=time.time()))

    central(0)
    for rnd in range(1, rounds + 1):
        list(strategy.configure_train(rnd, ArrayRecord(global_state), ConfigRecord({}), Mock()))
        replies = []
        for c, (x, y) in enumerate(data):
            local = make_model(cfg)
            local.load_state_dict(global_state)
            seed = local_seed(cfg.run.seed, rnd, c)
            torch.manual_seed(seed)
            res = train_locally(local, x, y, algorithm=t.algorithm, lr=t.lr, epochs=t.local_epochs,
                                batch_size=t.batch_size, seed=seed, server_round=rnd, client_id=c,
                                max_steps=t.max_local_steps)
            if capture:
                write_ground_truth(out, res.ground_truth)
            replies.append(_reply(local.state_dict(), len(y), c, res.steps, res.mean_loss))
        arrays, _ = strategy.aggregate_train(rnd, replies)
        global_state = arrays.to_torch_state_dict()
        del replies, arrays
        central(rnd)
        if on_round:
            on_round(rnd)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--config", default=str(ROOT / "configs" / "smoke.toml"))
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--width", type=int, default=8, help="model.width (64: ~0.5 MiB per state dict)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import logging

    logging.getLogger("flwr").setLevel(logging.WARNING)
    cfg = load_config(args.config, {"run.num_clients": args.clients,
                                    "data.max_examples_per_client": args.max_examples,
                                    "model.width": args.width})
    samples: dict[int, float] = {}

    def on_round(rnd: int) -> None:
        gc.collect()
        samples[rnd] = rss_mib()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        inprocess_federation(cfg, Path(tmp), rounds=args.rounds, on_round=on_round)
        captures = sum(1 for _ in Path(tmp, "captures").rglob("*.safetensors"))
    half = sorted(samples)[len(samples) // 2:]
    n = len(half)
    mx, my = sum(half) / n, sum(samples[r] for r in half) / n
    slope = sum((r - mx) * (samples[r] - my) for r in half) / max(1e-9, sum((r - mx) ** 2 for r in half))
    print(json.dumps({"rounds": args.rounds, "clients": args.clients, "width": args.width, "captures": captures,
                      "seconds": round(time.perf_counter() - start, 1),
                      "rss_mib": {str(r): round(samples[r], 1) for r in sorted(samples) if r == 1 or r % 5 == 0},
                      "rss_max_minus_round_10": round(max(samples[r] for r in samples if r >= 10) - samples.get(10, 0), 1),
                      "rss_slope_mib_per_round_second_half": round(slope, 4)}))


if __name__ == "__main__":
    main()
