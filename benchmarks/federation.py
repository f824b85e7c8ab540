"""Benchmark: wall time per round and peak memory of a real Flower simulation (Ray backend), 10 and 100
clients, FedAvg on the MNIST subset with a small CNN; capture off vs capture on vs capture + attacks.

    .venv/bin/python -m benchmarks.federation [--rounds 3] [--clients 10 100] [--modes off capture attack]

Round time = median of the differences between consecutive utility rows' timestamps (round 1 onward, so Ray
start-up is excluded). Peak memory = peak RSS summed over the process tree, sampled every 0.2 s. Settings are
run interleaved (off, capture, attack, off, ...) so that drift on the machine hits all of them alike.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import harness as h
from benchmarks.harness import ROOT
from fedsim.core.config import load_config
from fedsim.core.results import read_jsonl
from fedsim.lab.runner import run_federation

MODES = {
    "off": {"capture.enabled": False, "attack.enabled": False},
    "capture": {"capture.enabled": True, "attack.enabled": False},
    "attack": {"capture.enabled": True, "attack.enabled": True, "attack.label_methods": "ilrg,gi",
               "attack.inversion": "none", "attack.workers": 1},
}


def tree_rss_mb() -> float:
    """RSS of this process and all its descendants (SuperLink, simulation, Ray, attack workers), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total_kb, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


def measure(clients: int, rounds: int, mode: str, workdir: Path) -> dict:
    cfg = load_config(ROOT / "configs" / "smoke.toml", {
        "run.name": f"bench-{clients}-{mode}", "run.num_clients": clients, "run.num_rounds": rounds,
        "train.min_train_nodes": clients, "model.width": 16, "data.alpha": 0.5,
        "data.max_examples_per_client": 0, "train.batch_size": 32, "train.lr": 0.05, **MODES[mode]})
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_mb())
            time.sleep(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    start = time.perf_counter()
    out = run_federation(cfg, workdir / f"{clients}-{mode}", quiet=True)
    wall = time.perf_counter() - start
    stop.set()
    t.join()
    times = [r["time"] for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "utility"]
    per_round = [b - a for a, b in zip(times[1:], times[2:])] or [times[-1] - times[0]]
    captures = len(list((out / "captures").rglob("*.safetensors"))) if (out / "captures").exists() else 0
    return {"clients": clients, "mode": mode, "round_s": statistics.median(per_round), "wall_s": wall,
            "peak_rss_mb": peak[0], "captures": captures}


def main() -> None:
    parser = h.parser(__doc__, repeats=1, json=h.RESULTS / "federation.json")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    args = h.parse(parser)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for clients in args.clients:
            for _ in range(args.repeats):
                for mode in args.modes:
                    row = measure(clients, args.rounds, mode, Path(tmp))
                    print(json.dumps(row), flush=True)
                    results.append(row)
    h.write_json(args.json, results, args.command)
    print("| clients | mode | median round (s) | ratio vs off | peak RSS of the process tree (MB) |")
    print("|---|---|---|---|---|")
    for clients in args.clients:
        rows = [r for r in results if r["clients"] == clients]
        base = statistics.median(r["round_s"] for r in rows if r["mode"] == "off") if any(
            r["mode"] == "off" for r in rows) else None
        for mode in args.modes:
            sel = [r for r in rows if r["mode"] == mode]
            med = statistics.median(r["round_s"] for r in sel)
            ratio = f"{med / base:.2f}" if base else "-"
            print(f"| {clients} | {mode} | {med:.2f} | {ratio} | {max(r['peak_rss_mb'] for r in sel):.0f} |")


if __name__ == "__main__":
    main()
