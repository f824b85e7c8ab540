"""Replay one inversion method, with option overrides, on the round-1 captures of finished runs; print PSNR.

    .venv/bin/python -m benchmarks.replay_variant RUN[,RUN...] METHOD [JSON options incl. "steps"] [threads]
    e.g. python -m benchmarks.replay_variant runs/sweep_frontier/setting_00/seed_0 ig '{"regularizers": {"tv": 0.3}}'

Probes for docs/benchmarks/defenses.md (nothing is written to the runs).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

from benchmarks import harness as h
from fedsim.attacks.pipeline import attack_update
from fedsim.core.captures import load_update
from fedsim.core.config import load_config
from fedsim.core.experiment import make_model
from fedsim.evaluation.attacking import data_spec, plan_from_config
from fedsim.evaluation.scoring import score
from fedsim.evaluation.truth import truth_for


def main(argv: list[str] | None = None) -> int:
    p = h.parser(__doc__)
    p.add_argument("runs", help="run folders, comma-separated")
    p.add_argument("method", help="the inversion method to replay")
    p.add_argument("options", nargs="?", default="{}", help='JSON options (incl. "steps", "label_methods")')
    p.add_argument("threads", nargs="?", type=int, default=1, help="torch threads (default 1)")
    args = h.parse(p, argv)
    opts = json.loads(args.options)
    steps = opts.pop("steps", 400)
    labels = opts.pop("label_methods", None)
    vals = []
    for run in map(Path, args.runs.split(",")):
        cfg = load_config(run / "config.toml")
        plan = plan_from_config(cfg)
        plan = dataclasses.replace(plan, inversion=args.method, inversion_steps=steps, inversion_options=opts,
                                   label_methods=tuple(labels.split(",")) if labels else plan.label_methods)
        spec = data_spec(cfg)
        for cap in sorted((run / "captures" / "round_0001").glob("*.safetensors")):
            u = load_update(cap)
            res = [r for r in attack_update(u, lambda: make_model(cfg), plan, spec) if r.attack == "inversion"][0]
            if not res.ok:
                print(run.name, cap.name, "ERROR", res.error, flush=True)
                continue
            m = score(res, truth_for(run, u), spec.num_classes, spec.mean, spec.std)
            vals.append(m["psnr"])
            print(run.parent.name, run.name, cap.name, f"psnr {m['psnr']:.2f} ssim {m['ssim']:.3f} {res.seconds:.0f}s",
                  flush=True)
    print(args.method, opts, "steps", steps, "MEAN", round(statistics.mean(vals), 2) if vals else None, "n", len(vals),
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
