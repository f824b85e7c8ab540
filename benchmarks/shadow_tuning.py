"""The shadow rule (``ig-shadow``) on the self-tuning benchmark's held-out cells, beside the matching rule and the oracle.

For every cell of ``docs/benchmarks/self_tuning.json`` (same models, seeds, victims, labels, 300 steps) this runs
``ig-shadow`` for real: the TV weight is chosen on a shadow update simulated from public images that are not the
victims, then the real update is attacked once at that weight and scored against the victims. The other columns
(default ``ig``, the matching rule ``ig-auto``, the oracle) are read from the JSON, whose runs used the same seeds.

    nice -n 10 .venv/bin/python benchmarks/shadow_tuning.py [--aux same|cifar10] [--cases all] [--json FILE]
                                                            [--shadow-fraction 0.25]
    .venv/bin/python benchmarks/shadow_tuning.py --render FILE [FILE2]

``--aux same``: the server's public split is the foolbox CIFAR-100 images that are not in the victim batch (20 - K
images, same distribution). ``--aux cifar10``: the 20 foolbox CIFAR-10 images (another dataset; their labels 0-9
are used as classes of the 100-class model).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from self_tuning import CASES, shared_gradient  # noqa: E402  (the same cases and update)

from fedsim.attacks.inversion import invert  # noqa: E402
from fedsim.attacks.inversion.shadow import choose_tv  # noqa: E402
from fedsim.core.data.victims import load_victims  # noqa: E402
from fedsim.core.metrics.images import image_metrics  # noqa: E402

SELF_TUNING = Path(__file__).resolve().parent.parent / "benchmarks/results/self_tuning.json"


def _normalised(name: str):
    x, y, classes, mean, std = load_victims(name)
    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    return (x - m) / s, y, classes, mean, std


def cell(row: dict, aux_name: str, steps: int, fraction: float = 1.0, extend: int = 0,
         lr_grid: tuple[float, ...] = (0.1,)) -> dict:
    case = CASES[row["case"]]
    seed, k = int(row["seed"]), int(row["k"])
    xn, y, classes, mean, std = _normalised("cifar100")
    idx = torch.tensor([(seed * 7 + i) % len(xn) for i in range(k)])
    gt, labels = xn[idx], y[idx].clone()
    if aux_name == "same":
        rest = torch.tensor([i for i in range(len(xn)) if i not in set(idx.tolist())])
        aux = (xn[rest], y[rest])
    else:
        ax, ay, _, amean, astd = _normalised("cifar10")
        aux = (ax, ay)
    torch.manual_seed(seed)
    model = case.build(classes)
    model.train()
    target, _ = shared_gradient(case, model, gt, labels)
    schedule = {"lr": 0.05, "local_steps": 4, "local_batch_size": k} if case.fedavg else \
        {"lr": 0.05, "local_steps": 1, "local_batch_size": k}
    t0 = time.perf_counter()
    if fraction < 1.0:  # the pick only, at a fraction of the budget; the real run is ig at that weight (same
        # seed and steps as the JSON's grid run, so its PSNR is read from there: test_inversion_shadow shows equality)
        chosen, psnrs = choose_tv(model=model, aux=aux, labels=labels.sort().values, k=k, input_shape=(3, 32, 32),
                                  steps=max(1, int(steps * fraction)), mean=mean, std=std, seed=seed,
                                  tv_grid=[float(t) for t in row["tv"]], schedule=schedule)
        by = row["tv"]
        return {"case": row["case"], "seed": seed, "k": k, "aux": f"{aux_name}, shadow at {fraction:g} budget",
                "shadow_tv": chosen, "shadow_psnr_by_tv": psnrs, "psnr": by[str(float(chosen))]["psnr"],
                "seconds": time.perf_counter() - t0, "json_psnr_at_pick": by[str(float(chosen))]["psnr"],
                "default": row["default_psnr"], "rule": by[row["rule"]]["psnr"], "rule_tv": float(row["rule"]),
                "oracle": by[row["oracle"]]["psnr"], "oracle_tv": float(row["oracle"])}
    trace = invert("ig-shadow", model=model, gradients=target, labels=labels.sort().values, input_shape=(3, 32, 32),
                   steps=steps, mean=mean, std=std, seed=seed, aux=aux, return_result=True, extend_edges=extend,
                   lr_grid=lr_grid, **schedule)
    seconds = time.perf_counter() - t0
    score = lambda xh: image_metrics(xh.detach(), gt, mean, std, labels_hat=labels.sort().values,  # noqa: E731
                                     labels_true=labels)["psnr"]
    psnr = score(trace.inputs)
    by = row["tv"]
    # weights the edge extension tried beyond the JSON's grid: their real-run PSNR (ig, same seed and steps), so the
    # oracle over every weight the rule could pick is known
    run_ig = lambda tv, attack_lr=0.1: score(invert(  # noqa: E731
        "ig", model=model, gradients=target, labels=labels.sort().values, input_shape=(3, 32, 32), steps=steps,
        mean=mean, std=std, seed=seed, regularizers={"tv": tv}, attack_lr=attack_lr, **schedule))
    chosen_lr = trace.options["attack_lr_chosen"]
    if len(lr_grid) > 1:  # the step size is chosen too: every step size of the grid at the chosen TV, real runs
        at_tv = {str(a): psnr if a == chosen_lr else run_ig(trace.options["tv_chosen"], a) for a in lr_grid}
        best_lr = float(max(at_tv, key=at_tv.get))  # keys are strings in memory as in the JSON
        extra = {"lr_chosen": chosen_lr, "psnr_by_lr_at_tv": at_tv, "lr_oracle_at_tv": best_lr}
        beyond = {}
    else:
        extra = {}
        beyond = {tv: run_ig(tv) for tv in trace.options["tv_shadow_psnr"] if str(float(tv)) not in by}
    tried = {**{float(t): by[t]["psnr"] for t in by}, **beyond}
    oracle_tried = max(tried, key=tried.get)
    return {**extra, "case": row["case"], "seed": seed, "k": k,
            "aux": aux_name + (f", extend {extend}" if extend else "") + (
                f", step sizes {'/'.join(f'{a:g}' for a in lr_grid)}" if len(lr_grid) > 1 else ""),
            "beyond_grid": beyond, "oracle_tried": tried[oracle_tried], "oracle_tried_tv": oracle_tried,
            "shadow_tv": trace.options["tv_chosen"],
            "shadow_psnr_by_tv": trace.options["tv_shadow_psnr"], "psnr": psnr, "seconds": seconds,
            "json_psnr_at_pick": by[f"{float(trace.options['tv_chosen'])}"]["psnr"] if
            f"{float(trace.options['tv_chosen'])}" in by else None,
            "default": row["default_psnr"], "rule": by[row["rule"]]["psnr"], "rule_tv": float(row["rule"]),
            "oracle": by[row["oracle"]]["psnr"], "oracle_tv": float(row["oracle"])}


def table(runs: list[list[dict]]) -> str:
    """Means over seeds per (case, batch) for one or two --aux runs."""
    head = "| case | batch | default `ig` | `ig-auto` (matching) | " + " | ".join(
        f"`ig-shadow`, aux {r[0]['aux']} (TV)" for r in runs) + " | oracle (TV) | " + " | ".join(
        f"shadow({r[0]['aux']}) - oracle" for r in runs) + " |"
    lines = [head, "|" + "---|" * (4 + 2 * len(runs) + 1)]
    keys = list(dict.fromkeys((r["case"], r["k"]) for r in runs[0]))
    for key in keys:
        groups = [[c for c in run if (c["case"], c["k"]) == key] for run in runs]
        first = groups[0]
        mean = lambda cells, f: statistics.mean(c[f] for c in cells)  # noqa: E731
        picks = lambda cells, f: "/".join(f"{c[f]:g}" for c in cells)  # noqa: E731
        cols = [f"{mean(g, 'psnr'):.2f} ({picks(g, 'shadow_tv')})" for g in groups]
        gaps = [f"{mean(g, 'psnr') - mean(first, 'oracle'):+.2f}" for g in groups]
        lines.append(f"| {key[0]} | {key[1]} | {mean(first, 'default'):.2f} | {mean(first, 'rule'):.2f} "
                     f"({picks(first, 'rule_tv')}) | " + " | ".join(cols) +
                     f" | {mean(first, 'oracle'):.2f} ({picks(first, 'oracle_tv')}) | " + " | ".join(gaps) + " |")
    for run in runs:
        d = [c["psnr"] - c["oracle"] for c in run]
        lines.append("")
        lines.append(f"aux {run[0]['aux']}: shadow - oracle over {len(run)} cells mean {statistics.mean(d):+.2f} dB "
                     f"[{min(d):+.2f}, {max(d):+.2f}]; oracle's weight picked in "
                     f"{sum(c['shadow_tv'] == c['oracle_tv'] for c in run)}/{len(run)}; shadow - matching rule mean "
                     f"{statistics.mean(c['psnr'] - c['rule'] for c in run):+.2f} dB; shadow - default mean "
                     f"{statistics.mean(c['psnr'] - c['default'] for c in run):+.2f} dB; seconds per attack "
                     f"{statistics.mean(c['seconds'] for c in run):.0f} [{min(c['seconds'] for c in run):.0f}, "
                     f"{max(c['seconds'] for c in run):.0f}]")
        if any("lr_chosen" in c for c in run):
            g = [c["psnr_by_lr_at_tv"][str(c["lr_oracle_at_tv"])] for c in run]
            e = [c["psnr"] - b for c, b in zip(run, g)]
            picks = {}
            for c in run:
                picks[c["lr_chosen"]] = picks.get(c["lr_chosen"], 0) + 1
            lines.append(f"aux {run[0]['aux']}: step sizes picked " + ", ".join(
                f"{a:g} in {n}" for a, n in sorted(picks.items())) + f"; shadow - best step size at the chosen TV "
                f"mean {statistics.mean(e):+.2f} dB [{min(e):+.2f}, {max(e):+.2f}], that step size picked in "
                f"{sum(float(c['lr_chosen']) == float(c['lr_oracle_at_tv']) for c in run)}/{len(run)}")
        if any(c.get("beyond_grid") for c in run):
            e = [c["psnr"] - c["oracle_tried"] for c in run]
            lines.append(f"aux {run[0]['aux']}: weights tried beyond the grid in "
                         f"{sum(bool(c.get('beyond_grid')) for c in run)}/{len(run)} cells; shadow - oracle over every "
                         f"weight tried mean {statistics.mean(e):+.2f} dB [{min(e):+.2f}, {max(e):+.2f}]; that "
                         f"oracle's weight picked in {sum(c['shadow_tv'] == c['oracle_tried_tv'] for c in run)}"
                         f"/{len(run)}; shadow - grid oracle mean {statistics.mean(d):+.2f} dB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--aux", choices=("same", "cifar10"), default="same")
    p.add_argument("--cases", default="all")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--shadow-fraction", type=float, default=1.0,
                   help="< 1: the shadow grid at this share of the budget; only the pick is run (seconds = pick)")
    p.add_argument("--extend", type=int, default=0,
                   help="ig-shadow's extend_edges (0: the fixed grid, as the first measurements; 2: the default)")
    p.add_argument("--lr-grid", default="0.1",
                   help="ig-shadow's lr_grid, comma-separated (0.1: ig's step size only, as the first measurements)")
    p.add_argument("--json", default=None)
    p.add_argument("--render", nargs="+", default=None)
    args = p.parse_args(argv)
    if args.render:
        print(table([json.loads(Path(f).read_text()) for f in args.render]))
        return 0
    torch.set_num_threads(args.threads)
    rows = json.loads(SELF_TUNING.read_text())
    if args.cases != "all":
        rows = [r for r in rows if r["case"] in args.cases.split(",")]
    out = []
    for row in rows:
        out.append(cell(row, args.aux, args.steps, args.shadow_fraction, args.extend,
                        tuple(float(a) for a in args.lr_grid.split(","))))
        c = out[-1]
        print(json.dumps({k: c[k] for k in ("case", "k", "seed", "shadow_tv", "psnr", "json_psnr_at_pick", "rule",
                                            "oracle", "seconds")}), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
    print(table([out]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
