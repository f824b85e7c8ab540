"""Benchmark: how long the ``fedsim`` CLI takes to answer, timed as whole processes.

    .venv/bin/python -m benchmarks.cli_startup [--runs 5] [--root DIR]

Times, interleaved and after one warm-up each, ``fedsim --help`` and a bad-config error
(``fedsim run configs/smoke.toml --set train.lr=-1``, exit 2) as ``python -m fedsim.lab.cli ...`` subprocesses,
and prints the median and the spread (min-max) of the wall time of each, with the load average (the machine is
shared). ``--root`` times another checkout of the project instead (put first on ``PYTHONPATH``, run from
there), e.g. one exported from an older commit with ``git archive`` for a before/after comparison.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import ROOT, parse, parser

CASES: dict[str, tuple[list[str], int]] = {
    "fedsim --help": (["--help"], 0),
    "fedsim run configs/smoke.toml --set train.lr=-1": (["run", "configs/smoke.toml", "--set", "train.lr=-1"], 2),
}


def time_once(argv: list[str], expected: int, root: Path) -> float:
    """Wall seconds of one ``python -m fedsim.lab.cli ARGV`` process; its exit code must be ``expected``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fedsim.lab.cli", *argv], cwd=root, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != expected:
        raise SystemExit(f"fedsim {' '.join(argv)}: exit {proc.returncode}, expected {expected}")
    return elapsed


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--runs", type=int, default=5, help="counted runs of each command (default 5)")
    p.add_argument("--root", type=Path, default=ROOT, help="project checkout to time (default this one)")
    args = parse(p)
    root = args.root.resolve()
    for argv, expected in CASES.values():  # warm-up: page cache, .pyc files
        time_once(argv, expected, root)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.runs):
        for name, (argv, expected) in CASES.items():
            times[name].append(time_once(argv, expected, root))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load average {load}; "
          f"checkout {root}; {args.runs} runs each, interleaved, after one warm-up")
    for name, values in times.items():
        print(f"{name:<52} median {statistics.median(values):.3f} s  (min {min(values):.3f}, max {max(values):.3f})")


if __name__ == "__main__":
    main()
