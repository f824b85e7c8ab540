#!/usr/bin/env python
"""Re-run the run's inversion on a few captured updates with only ig's total-variation weight changed.

    python scripts/ig_tv_check.py RUN_DIR ROUND:CLIENT [ROUND:CLIENT ...] [--tv 0.01 1.0]

Uses the run's resolved config (attack plan, inversion steps, data spec) and its ground truth for scoring, with
labels from iLRG; prints PSNR / SSIM per update and TV weight. Grids go to a temporary folder, nothing is
written into the run folder. Used for the textbook-demo note in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path



def main(argv: list[str] | None = None) -> int:
    import torch

    from fedsim.attacks.pipeline import attack_update
    from fedsim.core.captures import load_update
    from fedsim.core.config import load_config
    from fedsim.evaluation.attacking import data_spec, make_model, plan_from_config, score_row, truth_for
    from fedsim.core.runfolder import RunFolder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("updates", nargs="+", help="ROUND:CLIENT")
    ap.add_argument("--tv", type=float, nargs="+", default=[0.01, 1.0])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    folder = RunFolder(Path(args.run_dir))
    cfg = load_config(folder.config)
    spec = data_spec(cfg)
    base = dataclasses.replace(plan_from_config(cfg), label_methods=("ilrg",))
    with tempfile.TemporaryDirectory() as scratch:
        for item in args.updates:
            rnd, client = (int(x) for x in item.split(":"))
            update = load_update(folder.capture(rnd, client))
            truth = truth_for(folder.root, update)
            for tv in args.tv:
                plan = dataclasses.replace(base, inversion_options={"regularizers": {"tv": tv}})
                start = time.time()
                res = [r for r in attack_update(update, lambda: make_model(cfg), plan, spec) if r.attack != "label"]
                row = score_row(res[0], update, truth, spec, Path(scratch))
                print(f"round {rnd} client {client} tv {tv:g}: PSNR {row.psnr:.1f} dB SSIM {row.ssim:.2f} "
                      f"({time.time() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
