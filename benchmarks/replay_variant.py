"""Replay one inversion method, with option overrides, on the round-1 captures of finished runs; print PSNR.

    .venv/bin/python benchmarks/replay_variant.py RUN[,RUN...] METHOD [JSON options incl. "steps"] [threads]
    e.g. benchmarks/replay_variant.py runs/sweep_frontier/setting_00/seed_0 ig '{"regularizers": {"tv": 0.3}}'

Probes for docs/benchmarks/defenses.md (nothing is written to the runs).
"""
import sys, json, dataclasses, statistics, torch
from pathlib import Path
from fedsim.core.config import load_config
from fedsim.core.captures import load_update
from fedsim.evaluation.attacking import plan_from_config, data_spec
from fedsim.evaluation.truth import truth_for
from fedsim.evaluation.scoring import score
from fedsim.core.experiment import make_model
from fedsim.attacks.pipeline import attack_update
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
runs = sys.argv[1].split(",")
method = sys.argv[2]
opts = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
steps = opts.pop("steps", 400)
labels = opts.pop("label_methods", None)
vals = []
for run in runs:
    run = Path(run)
    cfg = load_config(run / "config.toml")
    plan = plan_from_config(cfg)
    plan = dataclasses.replace(plan, inversion=method, inversion_steps=steps, inversion_options=opts,
                               label_methods=tuple(labels.split(",")) if labels else plan.label_methods)
    spec = data_spec(cfg)
    for cap in sorted((run / "captures" / "round_0001").glob("*.safetensors")):
        u = load_update(cap)
        res = [r for r in attack_update(u, lambda: make_model(cfg), plan, spec) if r.attack == "inversion"][0]
        if not res.ok:
            print(run.name, cap.name, "ERROR", res.error, flush=True); continue
        m = score(res, truth_for(run, u), spec.num_classes, spec.mean, spec.std)
        vals.append(m["psnr"])
        print(run.parent.name, run.name, cap.name, f"psnr {m['psnr']:.2f} ssim {m['ssim']:.3f} {res.seconds:.0f}s", flush=True)
print(method, opts, "steps", steps, "MEAN", round(statistics.mean(vals), 2), "n", len(vals), flush=True)
