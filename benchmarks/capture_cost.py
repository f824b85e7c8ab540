"""Benchmark: the curious server's per-update capture cost, measured in-process (no Ray noise).

    .venv/bin/python -m benchmarks.capture_cost [--repeats 200]

Builds the ``ClientUpdate`` of one FedAvg client of the benchmark federation (ConvNet width 16, MNIST subset),
then times, side by side and interleaved, (a) what capture adds on the server: ``CaptureWriter``, one
safetensors write of the update, and (b) one local training round of that client (the work a client does per
round). Medians over ``--repeats``; the ratio says how much capture
adds per update relative to the client's own work.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import harness as h
from fedsim.core.config import load_config  # noqa: E402
from fedsim.core.experiment import client_data, local_seed, make_model  # noqa: E402
from fedsim.core.training import train_locally  # noqa: E402
from fedsim.core.types import ClientUpdate  # noqa: E402
from fedsim.server.sinks import CaptureWriter  # noqa: E402


def main() -> None:
    parser = h.parser(__doc__, repeats=100, threads=1)
    parser.add_argument("--clients", type=int, default=10)
    args = h.parse(parser)
    cfg = load_config(h.ROOT / "configs" / "smoke.toml", {"run.num_clients": args.clients, "model.width": 16,
                                                         "data.alpha": 0.5, "data.max_examples_per_client": 0,
                                                         "train.batch_size": 32, "train.lr": 0.05})
    x, y = client_data(cfg, 0, args.clients)
    model = make_model(cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    t_train, t_capture = [], []
    with tempfile.TemporaryDirectory() as tmp:
        writer = CaptureWriter(tmp)
        for i in range(args.repeats):
            local = make_model(cfg)
            start = time.perf_counter()
            res = train_locally(local, x, y, algorithm="fedavg", lr=cfg.train.lr, epochs=1,
                                batch_size=cfg.train.batch_size, seed=local_seed(0, i, 0), server_round=i + 1,
                                client_id=0)
            t_train.append(time.perf_counter() - start)
            update = ClientUpdate(run_id="b", server_round=i + 1, client_id=0, algorithm="fedavg",
                                  weights_before=before,
                                  weights_after={n: p.detach().clone() for n, p in local.named_parameters()},
                                  lr=cfg.train.lr, local_epochs=1, local_steps=res.steps,
                                  batch_size=cfg.train.batch_size, num_examples=len(y))
            start = time.perf_counter()
            writer(update)
            t_capture.append(time.perf_counter() - start)
    size = sum(p.numel() for p in before.values()) * 4 * 2 / 2**20
    tr, cap = statistics.median(t_train), statistics.median(t_capture)
    print(f"client 0 of {args.clients}: {len(y)} examples, {res.steps} local steps, update {size:.2f} MB")
    print(f"| what | median (ms) |\n|---|---|\n| one client's local round (train) | {tr * 1e3:.1f} |\n"
          f"| capture of its update (safetensors write) | {cap * 1e3:.2f} |\n"
          f"| capture / local round | {cap / tr * 100:.1f} % |")


if __name__ == "__main__":
    main()
