"""Sweep wall time: the local thread pool against ``fedsim sweep --ray`` on a loopback cluster with 1 and 2 worker
nodes of one CPU each (a head without CPUs; ``tests/raycluster.py``), same sweep file, same machine, one run; and the
per-federation overhead of going through Ray (the driver's wait minus the time inside the task, from
``ray_tasks.jsonl``). Prints a Markdown table.

    .venv/bin/python -m benchmarks.ray_sweep [--seeds 0,1] [--attacks]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import harness as h
from benchmarks.harness import ROOT

SWEEP = """[sweep]
name = "ray_bench"
base = "{base}"
parameter = "defense.update.topk_ratio"
values = [0.0, 0.5]
seeds = [{seeds}]

[run]
num_rounds = 1
num_clients = 2

[data]
max_examples_per_client = 32

[train]
min_train_nodes = 2

[attack]
enabled = {attacks}
label_methods = "ilrg"
inversion_steps = 5
"""


def sweep(file: Path, out: Path, *extra: str) -> float:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "fedsim.lab.cli", "sweep", str(file), "--out", str(out), "--quiet",
                           *extra], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{out}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return time.monotonic() - t0


def main() -> None:
    ap = h.parser(__doc__)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds of the sweep (default 0)")
    ap.add_argument("--attacks", action="store_true")
    args = h.parse(ap)
    from tests.raycluster import LoopbackCluster  # run from the repository root (python -m benchmarks.ray_sweep)

    work = Path(tempfile.mkdtemp(prefix="ray_bench_"))
    file = work / "sweep.toml"
    file.write_text(SWEEP.format(base=ROOT / "configs" / "smoke.toml", seeds=args.seeds,
                                 attacks=str(args.attacks).lower()))
    rows = [("local pool, --parallel 1", sweep(file, work / "local1", "--parallel", "1"), None),
            ("local pool, --parallel 2", sweep(file, work / "local2", "--parallel", "2"), None)]
    for nodes in (1, 2):
        cluster = LoopbackCluster(workers=nodes)
        try:
            out = work / f"ray{nodes}"
            wall = sweep(file, out, "--ray", cluster.address)
            tasks = [json.loads(x) for x in (out / "ray_tasks.jsonl").read_text().splitlines()]
            over = min(t["driver_s"] - t["task_s"] for t in tasks)  # a task that did not wait in the queue
            rows.append((f"--ray, {nodes} worker node(s) of 1 CPU (cluster start {cluster.start_s:.0f} s, not counted)",
                         wall, over))
        finally:
            left = cluster.stop()
            if left:
                print(f"warning: cluster processes left: {left}", file=sys.stderr)
    base = rows[0][1]
    print(f"sweep: 2 settings x seeds {args.seeds}, attacks {'on' if args.attacks else 'off'}; folder {work}\n")
    print("| how | wall time | vs local --parallel 1 | Ray overhead per federation (least over tasks: driver wait - time in the task) |")
    print("|---|---|---|---|")
    for name, wall, over in rows:
        print(f"| {name} | {wall:.0f} s | {wall / base:.2f} | {'' if over is None else f'{over:.2f} s'} |")


if __name__ == "__main__":
    main()
