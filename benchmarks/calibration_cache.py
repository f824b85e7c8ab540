"""Attack seconds per update with and without ig-shadow's calibration cache (issue 36 part 3), on a run's captures.

Replays the run's attack (its config, ``attack.inversion_steps`` overridable) on the listed captures in order, in
this process, and prints one JSON line per update: wall and CPU seconds of ``attack_and_score`` (this process's
``time.process_time``: on a shared machine CPU seconds move less with the load than wall seconds), PSNR and the
shadow-calibration signal. ``--cache`` hands one ``CalibrationCache`` to every update, as ``fedsim attack`` and the
scheduler's workers do; without it each update calibrates alone (the behaviour before the cache). Rows are not
appended to the run; image grids are written as a replay writes them.

    .venv/bin/python -m benchmarks.calibration_cache runs/demo 1:0,1:1,10:0,10:1,30:0,30:1,80:0,80:1 --steps 100 --cache
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks import harness as h


def main() -> None:
    ap = h.parser(__doc__)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("updates", help="round:client,... in the order to attack them")
    ap.add_argument("--steps", type=int, default=0, help="attack.inversion_steps (0: the run's)")
    ap.add_argument("--cache", action="store_true", help="one CalibrationCache for all updates")
    args = h.parse(ap)

    from fedsim.attacks.inversion.calibration import CalibrationCache
    from fedsim.core.config import load_config
    from fedsim.core.rows import InversionRow
    from fedsim.core.runfolder import RunFolder
    from fedsim.evaluation.attacking import attack_and_score, plan_from_config

    run = args.run_dir.resolve()
    overrides = {"attack.inversion_steps": args.steps} if args.steps else {}
    cfg = load_config(run / "config.toml", overrides).replace(**{"run.out_dir": str(run)})
    plan, flat = plan_from_config(cfg), cfg.to_flat()
    cache = CalibrationCache() if args.cache else None
    folder = RunFolder(run)
    for item in args.updates.split(","):
        r, c = (int(v) for v in item.split(":"))
        wall, cpu = time.perf_counter(), time.process_time()
        rows = attack_and_score(folder.capture(r, c), flat, run, plan, calibration_cache=cache)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        inv = next((x for x in rows if isinstance(x, InversionRow)), None)
        print(json.dumps({"round": r, "client": c, "steps": cfg.attack.inversion_steps, "wall_s": round(wall, 1),
                          "cpu_s": round(cpu, 1), "psnr": inv.psnr if inv else None,
                          "signal": [s for s in (inv.signals or []) if "shadow" in s] if inv else []}), flush=True)
    if cache is not None:
        print(json.dumps({"cache": repr(cache)}), flush=True)


if __name__ == "__main__":
    main()
