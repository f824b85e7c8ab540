"""Benchmark: does memory grow with rounds? RSS of this process over many rounds of the in-process
training + aggregation + capture path (the ClientApp's local SGD, the curious strategy's validation, capture
to safetensors, FedAvg, central evaluation, metrics rows), without Flower's transport.

    .venv/bin/python -m benchmarks.memory [--rounds 50] [--clients 3] [--width 8] [--config configs/smoke.toml]

Prints one JSON object: RSS (MiB) after warm-up round 1, after rounds 10/25/50, and the slope of RSS over
the second half of the rounds (MiB per round; ~0 means no growth). Results: docs/reliability.md.

Per process, on a CIFAR-10-sized dataset (``--per-process``; results: docs/benchmarks.md)::

    .venv/bin/python -m benchmarks.memory --per-process [--data-root /tmp/fedsim-cifar-like] [--src OLD_TREE]

generates (once) 50,000 + 10,000 **random** uint8 3x32x32 images with random labels in torchvision's CIFAR-10
layout (``cifar-10-batches-py``: pickled ``data_batch_1..5``, ``test_batch``, ``batches.meta``; random pixels,
so torchvision's md5 check is bypassed in the measured processes and nothing here measures accuracy), then starts
one fresh Python process per role and reports its resident memory (VmRSS, RssAnon: private, RssFile: file
pages, shared with every process mapping the same cache) and the seconds from the start of the role's data calls
until its tensors are ready: ``client`` (what a ClientApp calls: ``make_model`` + ``client_data`` of
partition 0 of 20, Dirichlet(0.3)), ``attack`` (an attack worker: ``data_spec`` with a public-split method,
the public half of the test split, plus one client's partition as identification's pool) and ``server``
(``make_model`` + ``test_data``). ``--src OLD_TREE`` runs the roles against another checkout
(``git archive <commit> | tar -x -C OLD_TREE``): the before figures.
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

import torch

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from benchmarks import harness as h
from benchmarks.harness import ROOT
from fedsim.core.audit import write_ground_truth
from fedsim.core.config import ExperimentConfig, load_config
from fedsim.core.experiment import client_data, local_seed, make_model, test_data
from fedsim.core.rows import UtilityRow
from fedsim.core.runfolder import RunFolder
from fedsim.core.training import evaluate, train_locally
from fedsim.server.sinks import CaptureWriter
from fedsim.server.strategy import CuriousStrategy, TrainSettings


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


CIFAR_SHAPE = (3, 32, 32)
ROLES = ("client", "attack", "server")


def generate_cifar_like(root: Path, n_train: int = 50_000, n_test: int = 10_000, seed: int = 0) -> Path:
    """torchvision's CIFAR-10 layout under ``root/cifar-10-batches-py`` filled with RANDOM uint8 pixels and labels
    (written once; the real files' sizes and pickle format, not their content)."""
    import pickle

    import numpy as np

    folder = Path(root) / "cifar-10-batches-py"
    if (folder / "test_batch").exists():
        return Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per = n_train // 5
    batches = [(f"data_batch_{i + 1}", per) for i in range(5)] + [("test_batch", n_test)]
    for name, n in batches:
        data = rng.integers(0, 256, (n, int(np.prod(CIFAR_SHAPE))), dtype=np.uint8)  # rows: R, G, B planes
        labels = rng.integers(0, 10, n).tolist()
        with open(folder / name, "wb") as fh:
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": [""] * n}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{c}" for c in range(10)], "num_cases_per_batch": per}, fh)
    return Path(root)


def _proc_status() -> dict[str, float]:
    """MiB: VmRSS = RssAnon (private) + RssFile (file pages: shared libraries, and the store's memory map, which
    every process mapping it shares); Pss splits shared pages among their users; VmHWM: peak RSS."""
    out = {}
    for path, keys in (("/proc/self/status", ("VmRSS", "RssAnon", "RssFile", "VmHWM")),
                       ("/proc/self/smaps_rollup", ("Pss", "Pss_Anon", "Pss_File"))):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            name = line.split(":")[0]
            if name in keys:
                out[name] = round(int(line.split()[1]) / 1024, 1)
    return out


def role_worker(role: str, data_root: Path, clients: int) -> dict:
    """One role's data calls in this (fresh) process; RSS after them. Random pixels: md5 check bypassed."""
    import torchvision.datasets.cifar as tv_cifar

    tv_cifar.check_integrity = lambda *a, **k: True  # random pixels: not the real files' md5 (data and meta)
    import flwr.clientapp  # noqa: F401  (the real processes import Flower too: part of the baseline)

    from fedsim.core.config import from_flat
    from fedsim.core import experiment as E

    cfg = from_flat({"data.dataset": "cifar10", "data.data_dir": str(data_root), "data.partition": "dirichlet",
                     "data.alpha": 0.3, "run.num_clients": clients, "model.name": "convnet", "run.seed": 0})
    gc.collect()
    base = _proc_status()
    start = time.perf_counter()
    E.make_model(cfg)  # the first call opens (or loads) the dataset: its shape and classes
    model_seconds = time.perf_counter() - start
    if role == "client":
        x, y = E.client_data(cfg, 0, clients)
        rows = len(y)
    elif role == "attack":
        from fedsim.evaluation.attacking import data_spec

        spec = data_spec(cfg.replace(**{"attack.label_methods": "rlu"}))
        pool, _ = E.client_data(cfg, 0, clients)  # identification's pool: the attacked client's partition
        rows = len(spec.public_aux[1]) + len(pool)
    elif role == "server":
        x, y = E.test_data(cfg)
        rows = len(y)
    else:
        raise ValueError(f"role: {role!r} is not one of {ROLES}")
    seconds = time.perf_counter() - start
    gc.collect()
    return {"role": role, "rows": rows, "seconds": round(seconds, 2), "model_seconds": round(model_seconds, 2),
            "base_mib": base, "mib": _proc_status(),
            "code": str(Path(E.__file__).resolve().parents[2])}


def per_process(data_root: Path, clients: int, src: str | None, cache: Path) -> dict:
    """Each role in a fresh process (the first call of a new code builds its cache: timed apart as ``build``)."""
    import os
    import subprocess
    import sys

    generate_cifar_like(data_root)
    # the worker is this file run by its path: its code from --src when given (first on the path), the harness
    # from this checkout where --src has none
    paths = [str(Path(src).resolve())] if src else []
    env = {**os.environ, "FEDSIM_DATA_CACHE": str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(paths + [str(ROOT)])}

    def run(role: str) -> dict:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", role, "--data-root",
                              str(data_root), "--clients", str(clients)], env=env, capture_output=True, text=True,
                             cwd=src or None, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    result = {"data_root": str(data_root), "random_pixels": True, "clients": clients, "src": src or str(ROOT)}
    result["build"] = run("client")  # first process: builds the dataset cache where the code has one
    result["roles"] = {role: run(role) for role in ROLES}
    return result


def main() -> None:
    parser = h.parser(__doc__, threads=1)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--clients", type=int, default=None, help="3 in-process; 20 with --per-process")
    parser.add_argument("--config", default=str(ROOT / "configs" / "smoke.toml"))
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--width", type=int, default=8, help="model.width (64: ~0.5 MiB per state dict)")
    parser.add_argument("--per-process", action="store_true", help="RSS per ClientApp / attack worker / server "
                        "process on a generated CIFAR-10-sized dataset (random pixels)")
    parser.add_argument("--data-root", default="/tmp/fedsim-cifar-like", help="where the generated dataset lives")
    parser.add_argument("--cache", default="", help="dataset cache folder (default: <data-root>/cache)")
    parser.add_argument("--src", default="", help="another checkout to measure (the before figures)")
    parser.add_argument("--worker", choices=ROLES, help=argparse.SUPPRESS)
    args = h.parse(parser)
    if args.worker:
        print(json.dumps(role_worker(args.worker, Path(args.data_root), args.clients or 20)))
        return
    if args.per_process:
        clients = args.clients or 20
        cache = Path(args.cache) if args.cache else Path(args.data_root) / "cache"
        print(json.dumps(per_process(Path(args.data_root), clients, args.src or None, cache), indent=1))
        return
    args.clients = args.clients or 3
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
