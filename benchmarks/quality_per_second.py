"""Quality per second of ``ig``: time to reach a PSNR, not time per iteration.

For every case and seed ``ig`` runs with the full budget (the reference), with early stopping on a plateau of its
own matching loss (``early_stop=``, ``fedsim.attacks.inversion.early_stop``; a grid of (patience, rel_tol) with
``--grid``), and with R restarts three ways: one batched call (``restarts=R``, one vmapped pass), one call with a
Python loop over the restarts (``batch_restarts=False``: set-up shared), and R separate calls (set-up repeated),
the last picked by the smallest ``best_loss`` (the engine's matching loss, no ground truth). The set-up share of a
call (``resolve_spec`` + ``build_problem`` + ``init_variables`` + ``Objective``) is timed on its own, as ig-auto
pays it once per TV weight.

PSNR (ground truth: the benchmark's score only, never the attack's choice) of the best iterate is read every 10
steps through the engine's callback; the callback's own time is subtracted. X = 90 % of the full-budget final
PSNR of the cell; "time to X" is the first logged time at or above it.

    nice -n 10 .venv/bin/python -m benchmarks.quality_per_second [--cases all] [--seeds 3] [--steps 500]
                                                                  [--restarts 4] [--grid] [--json FILE]
    nice -n 10 .venv/bin/python -m benchmarks.quality_per_second --auto [--cases ...] [--seeds 2] [--steps 300]

``--auto`` measures ig-auto instead (5 TV weights): separate runs (today's default) vs ``batched=True`` (the grid
as the restarts of one call), each with and without ``early_stop=True``.

Cases: untrained zoo ConvNet (train mode), FedSGD batch-mean gradient, labels given (sorted); MNIST / CIFAR-10
images of foolbox (image ``(7 seed + i) mod 20``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from benchmarks import harness as h
from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import INVERSION_METHODS, invert
from fedsim.attacks.inversion.core import Objective, init_variables, resolve_spec
from fedsim.attacks.inversion.problem import build_problem
from fedsim.core.metrics.images import image_metrics
from fedsim.core.models.zoo import build_model


@dataclass(frozen=True)
class Case:
    name: str
    data: str
    width: int
    batch: int


CASES = {c.name: c for c in (Case("mnist-convnet8-b4", "mnist", 8, 4), Case("mnist-convnet16-b8", "mnist", 16, 8),
                             Case("cifar10-convnet16-b4", "cifar10", 16, 4))}
# early_stop=True is EarlyStop() = patience 50, rel_tol 1e-3; the grid's other points (--grid)
GRID = ({"patience": 10, "rel_tol": 0.01}, {"patience": 25, "rel_tol": 0.01}, {"patience": 25, "rel_tol": 0.001},
        {"patience": 100, "rel_tol": 0.001})


def setup(case: Case, seed: int) -> dict:
    gt, labels, classes, mean, std = h.foolbox_batch(case.data, case.batch, seed)
    model = build_model("convnet", tuple(gt.shape[1:]), classes, seed=seed, width=case.width)
    model.train()
    grads = [g.detach() for g in batch_gradient(model, gt, labels)]
    return dict(model=model, gradients=grads, labels=labels.sort().values, input_shape=tuple(gt.shape[1:]),
                mean=mean, std=std, gt=gt, true_labels=labels)


def run(cell: dict, steps: int, seed: int, method: str = "ig", **options) -> dict:
    """One ig (or ig-auto) call; PSNR of the best iterate every 10 steps at its attack time (scoring time subtracted)."""
    curve, scoring = [], [0.0]
    t0 = time.perf_counter()

    def callback(step, x, loss):
        t = time.perf_counter()
        psnr = image_metrics(x, cell["gt"], cell["mean"], cell["std"])["psnr"]
        curve.append((t - t0 - scoring[0], psnr))
        scoring[0] += time.perf_counter() - t

    tr = invert(method, model=cell["model"], gradients=cell["gradients"], labels=cell["labels"],
                input_shape=cell["input_shape"], steps=steps, mean=cell["mean"], std=cell["std"], seed=seed,
                return_result=True, callback=callback, log_every=10, **options)
    seconds = time.perf_counter() - t0 - scoring[0]
    psnr = image_metrics(tr.inputs, cell["gt"], cell["mean"], cell["std"])["psnr"]
    return dict(psnr=psnr, seconds=seconds, steps=tr.steps, stop=tr.stop_reason, best_loss=tr.best_loss,
                curve=curve)


def setup_seconds(cell: dict, steps: int, repeats: int = 5) -> float:
    """Median time of the engine's set-up stages for ig (what each ig-auto run repeats)."""
    spec0 = INVERSION_METHODS["ig"].run.spec_for(cell["model"], {})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        spec, extra = resolve_spec(spec0, {}, steps)
        problem = build_problem(spec, model=cell["model"], gradients=cell["gradients"], labels=cell["labels"],
                                input_shape=cell["input_shape"], mean=cell["mean"], std=cell["std"], extra=extra)
        init_variables(problem, spec, steps, 0)
        Objective(problem, spec).matcher.close()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_to(curve: list, target: float) -> float | None:
    return next((t for t, p in curve if p >= target), None)


def measure(case: Case, seed: int, steps: int, restarts: int, grid: bool) -> dict:
    cell = setup(case, seed)
    row: dict = {"case": case.name, "seed": seed, "steps_budget": steps}
    row["full"] = run(cell, steps, seed)
    row["early"] = run(cell, steps, seed, early_stop=True)
    if grid:
        for rule in GRID:
            row[f"early p{rule['patience']} tol{rule['rel_tol']:g}"] = run(cell, steps, seed, early_stop=rule)
    row[f"R={restarts} batched"] = run(cell, steps, seed, restarts=restarts)
    row[f"R={restarts} loop"] = run(cell, steps, seed, restarts=restarts, batch_restarts=False)
    separate = [run(cell, steps, 1000 * seed + r) for r in range(restarts)]
    pick = min(separate, key=lambda r: r["best_loss"])
    row[f"R={restarts} separate"] = dict(pick, seconds=sum(r["seconds"] for r in separate),
                                         steps=sum(r["steps"] for r in separate), curve=[])
    row[f"R={restarts} batched+early"] = run(cell, steps, seed, restarts=restarts, early_stop=True)
    row["setup_seconds"] = setup_seconds(cell, steps)
    target = 0.9 * row["full"]["psnr"]
    row["target_psnr"] = target
    for key, value in row.items():
        if isinstance(value, dict) and "curve" in value:
            value["time_to_target"] = time_to(value["curve"], target)
    return row


def measure_auto(case: Case, seed: int, steps: int) -> dict:
    """ig-auto: separate runs vs one batched call, with and without early stopping (no curves: one pick)."""
    cell = setup(case, seed)
    row: dict = {"case": case.name, "seed": seed, "steps_budget": steps}
    for name, opts in (("ig-auto separate", {}), ("ig-auto batched", {"batched": True}),
                       ("ig-auto separate+early", {"early_stop": True}),
                       ("ig-auto batched+early", {"batched": True, "early_stop": True})):
        out = run(cell, steps, seed, method="ig-auto", **opts)
        row[name] = dict(out, curve=[], time_to_target=None)
    row["full"] = row["ig-auto separate"]
    row["setup_seconds"] = setup_seconds(cell, steps)
    return row


def table(rows: list[dict]) -> str:
    out = []
    for (name,), cells in h.groups(rows, "case").items():
        for key in [k for k, v in cells[0].items() if isinstance(v, dict) and "psnr" in v]:
            vals = [c[key] for c in cells]
            reached = [v["time_to_target"] for v in vals if v.get("time_to_target") is not None]
            out.append([name, key, h.spread([v["psnr"] for v in vals]),
                        h.spread([v["psnr"] - c["full"]["psnr"] for v, c in zip(vals, cells)]),
                        h.spread([v["seconds"] for v in vals]), h.spread([v["steps"] for v in vals], 0),
                        h.spread(reached) if vals[0]["curve"] else "n/a",
                        f"{len(reached) if vals[0]['curve'] else '-'}/{len(vals)}"])
        out.append([name, "set-up per call (s)", "", "", h.spread([c["setup_seconds"] for c in cells], 4), "", "", ""])
    return h.markdown(["case", "variant", "final PSNR dB", "PSNR - full", "seconds", "steps",
                       "time to 90 % of full PSNR (s)", "reached"], out)


def main(argv: list[str] | None = None) -> int:
    p = h.parser(__doc__, cases="all", seeds=3, steps=500, threads=1, json=None)
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--grid", action="store_true", help="also run the (patience, rel_tol) grid")
    p.add_argument("--auto", action="store_true", help="measure ig-auto (separate vs batched) instead")
    args = h.parse(p, argv)
    names = h.choose(p, "--cases", args.cases, CASES)
    t0 = time.perf_counter()
    if args.auto:
        rows = [measure_auto(CASES[n], s, args.steps) for n in names for s in range(args.seeds)]
    else:
        rows = [measure(CASES[n], s, args.steps, args.restarts, args.grid) for n in names for s in range(args.seeds)]
    print(table(rows))
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s, torch threads {args.threads}")
    if args.json:
        h.write_json(args.json, rows, args.command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
