"""Learning-rate (and clip-norm) selection for the defense sweeps, on a validation split the attacks never see;
and the markdown table of a finished sweep (docs/benchmarks/defenses.md).

    .venv/bin/python -m benchmarks.defenses tune --families none,topk_0.1 --out T.json   # grid per family
    .venv/bin/python -m benchmarks.defenses tune --families dp_sgd_1 --pairs 0.1:1.0,0.03:1.0 --out T.json
    .venv/bin/python -m benchmarks.defenses table runs/sweep_frontier/sweep.jsonl
    .venv/bin/python -m benchmarks.defenses heldout runs/sweep_frontier    # held-out-half accuracy of old runs

Validation split: the ODD-indexed half of the dataset's test split (``test_x[1::2]``). The curious server's public
auxiliary split is the EVEN-indexed half (``fedsim.attacks.generative.aux_split``, ``aux_part="test-half"``), and clients
train only on the train split, so no attack ever reads the validation images.

The tuner is an in-process replica of the federation (no Flower, no Ray): the same seeded model, the same client
partitions and FedSGD batches (``fedsim.core.experiment``), the same local training incl. Opacus DP-SGD
(``fedsim.core.defense.registry.train_defended``), the same update defenses (``fedsim.core.defense.update.defend_weights``),
FedAvg's equal-weight mean (every FedSGD client reports min(B, n) examples), and Flower's Gaussian mechanisms as
Flower computes them: central DP (server-side fixed clipping) clips each update to C and adds N(0, (z C / m)^2) to
the mean of m updates; LocalDpMod clips to C and adds N(0, (C sqrt(2 ln(1.25/delta)) / epsilon)^2) per release.
Score: mean validation accuracy over the last 10 rounds (less noisy than the last round alone). One seed (0).
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
from pathlib import Path

import torch

from benchmarks import harness as h
from fedsim.core.config import flatten, from_flat, read_toml
from fedsim.core import experiment as E
from fedsim.core.defense.registry import train_defended
from fedsim.core.defense.update import apply_update, clip_update, defend_weights, update_of
from fedsim.core.training import evaluate

# setting family -> (config overrides, grid of extra tuned keys); train.lr is always tuned
LRS = (0.03, 0.1, 0.3, 1.0)
GRIDS: dict[str, tuple[dict, dict]] = {
    "none": ({}, {}),
    "dp_sgd_0": ({"defense.dp_sgd.enabled": True, "defense.dp_sgd.noise_multiplier": 0.0},
                 {"defense.dp_sgd.max_grad_norm": (1.0, 4.0)}),
    "dp_sgd_0.5": ({"defense.dp_sgd.enabled": True, "defense.dp_sgd.noise_multiplier": 0.5},
                   {"defense.dp_sgd.max_grad_norm": (1.0, 4.0)}),
    "dp_sgd_1": ({"defense.dp_sgd.enabled": True, "defense.dp_sgd.noise_multiplier": 1.0},
                 {"defense.dp_sgd.max_grad_norm": (1.0, 4.0)}),
    "topk_0.1": ({"defense.update.topk_ratio": 0.1}, {}),
    "topk_0.01": ({"defense.update.topk_ratio": 0.01}, {}),
    "central_0.1": ({"defense.central_dp.clipping": "server", "defense.central_dp.noise_multiplier": 0.1},
                    {"defense.central_dp.clip_norm": (0.1, 1.0)}),
    "central_1": ({"defense.central_dp.clipping": "server", "defense.central_dp.noise_multiplier": 1.0},
                  {"defense.central_dp.clip_norm": (0.1, 1.0)}),
    "local_dp_100": ({"defense.local_dp.enabled": True, "defense.local_dp.epsilon": 100.0},
                     {"defense.local_dp.clip_norm": (0.01, 0.1)}),
}


def simulate(cfg, rounds: int, seed: int = 0) -> tuple[float, list[float]]:
    """Validation accuracy (mean of the last 10 rounds) of the federation ``cfg`` replayed in-process."""
    torch.manual_seed(seed)
    model = E.make_model(cfg)
    n = cfg.run.num_clients
    data = [E.client_data(cfg, c, n) for c in range(n)]
    ds = E.dataset(cfg)
    vx, vy = ds.normalize(ds.test_x[E.VALIDATION]), ds.test_y[E.VALIDATION]
    d, t = cfg.defense, cfg.train
    noise_gen = torch.Generator().manual_seed(10_000 + seed)
    curve = []
    for r in range(1, rounds + 1):
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        params = [k for k, _ in model.named_parameters()]
        deltas = []
        for c, (x, y) in enumerate(data):
            model.load_state_dict(before)
            train_defended(d, model, x, y, algorithm=t.algorithm, lr=t.lr, epochs=t.local_epochs,
                           batch_size=t.batch_size, seed=E.local_seed(cfg.run.seed, r, c), server_round=r,
                           client_id=c, max_steps=t.max_local_steps)
            after = {k: v.detach().clone() for k, v in model.state_dict().items() if k in params}
            after = defend_weights({k: before[k] for k in params}, after, d.update,
                                   seed=E.local_seed(cfg.run.seed, r, c) + 7919)
            delta = update_of({k: before[k] for k in params}, after)
            if d.local_dp.enabled:
                ld = d.local_dp
                delta = clip_update(delta, ld.clip_norm)
                std = ld.clip_norm * math.sqrt(2 * math.log(1.25 / ld.delta)) / ld.epsilon
                delta = {k: v + torch.randn(v.shape, generator=noise_gen, dtype=v.dtype) * std
                         for k, v in delta.items()}
            if d.central_dp.clipping != "off":
                delta = clip_update(delta, d.central_dp.clip_norm)
            deltas.append(delta)
        mean = {k: sum(dl[k] for dl in deltas) / n for k in params}
        if d.central_dp.clipping != "off":
            std = d.central_dp.noise_multiplier * d.central_dp.clip_norm / n
            mean = {k: v + torch.randn(v.shape, generator=noise_gen, dtype=v.dtype) * std for k, v in mean.items()}
        state = dict(before)
        state.update(apply_update({k: before[k] for k in params}, mean))
        model.load_state_dict({k: v.to(before[k].dtype) for k, v in state.items()})
        if r > rounds - 10:
            acc, _ = evaluate(model, vx, vy)
            curve.append(acc if math.isfinite(acc) else 0.0)
    return sum(curve) / len(curve), curve


def tune(base: Path, families: list[str], rounds: int, out: Path | None, lrs: tuple[float, ...] = LRS,
         pairs: list[tuple[float, ...]] | None = None) -> dict:
    """Grid search per family; ``pairs`` replaces the product grid with explicit (lr, clip, ...) tuples."""
    flat = flatten(read_toml(base, "base"))
    flat["run.num_rounds"] = rounds
    results = json.loads(out.read_text()) if out and out.exists() else {}
    for fam in families:
        fixed, grid = GRIDS[fam]
        keys = ["train.lr", *grid]
        trials = []
        for combo in pairs or itertools.product(lrs, *grid.values()):
            cfg = from_flat({**flat, **fixed, **dict(zip(keys, combo))})
            start = time.perf_counter()
            score, _ = simulate(cfg, rounds)
            trials.append({"set": dict(zip(keys, combo)), "val_accuracy": round(score, 4),
                           "seconds": round(time.perf_counter() - start, 1)})
            print(fam, trials[-1], flush=True)
        best = max(trials, key=lambda tr: tr["val_accuracy"])
        results[fam] = {"fixed": fixed, "best": best["set"], "best_val_accuracy": best["val_accuracy"],
                        "trials": trials, "rounds": rounds}
        if out:
            out.write_text(json.dumps(results, indent=1))
    return results


def _ci(row: dict, key: str, digits: int) -> str:
    v, ci = row.get(key), row.get(f"{key}_ci")
    if v is None:
        return "-"
    text = f"{v:.{digits}f}"
    return f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else text


def table(jsonl: Path) -> str:
    """The markdown table of a sweep's points (docs/benchmarks/defenses.md)."""
    from fedsim.lab.sweep import point_label, read_sweep

    rows = read_sweep(jsonl)  # "inf" (an epsilon without noise) back as a float
    out = ["| setting | seeds | test accuracy | label method acted on: LnAcc | LeAcc | attacker's pick: PSNR (dB) | "
           "SSIM | re-identified (chance) | oracle PSNR (ground-truth pick) | epsilon (delta) | PSNR by method |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        eps = r.get("epsilon")
        eps_text = "-" if eps is None else ("inf" if not math.isfinite(eps) else f"{eps:.3g} ({r['delta']:g})")
        by = ", ".join(f"{m} {v:.1f}" for m, v in (r.get("psnr_by_method") or {}).items() if v is not None)
        out.append(f"| {point_label(r)} | {r['seeds_run']} | {_ci(r, 'test_accuracy', 3)} | "
                   f"{r.get('label_best')}: {_ci(r, 'label_lnacc', 3)} | {_ci(r, 'label_leacc', 3)} | "
                   f"{r.get('inversion_best')}: {_ci(r, 'psnr', 1)} | {_ci(r, 'ssim', 3)} | "
                   f"{_ci(r, 'ident_reid_acc', 2)} ({_ci(r, 'ident_reid_chance', 3)}) | {_ci(r, 'psnr_oracle', 1)} | "
                   f"{eps_text} | {by} |")
    return "\n".join(out)


def heldout(sweep_dir: Path) -> str:
    """Held-out-half accuracy of finished runs that predate ``UtilityRow.heldout_accuracy``.

    The global model after round R-1 is the ``weights_before`` (and buffers) of any round-R capture: exactly what
    the server sent, central DP noise included. It is re-evaluated on the whole test split (must equal the
    recorded round R-1 ``test_accuracy``: a check that the right model was rebuilt) and on the held-out half.
    """
    from fedsim.core.captures import load_update
    from fedsim.core.config import load_config
    from fedsim.lab.sweep.summary import t_interval
    from fedsim.core.rows import UtilityRow
    from fedsim.core.runfolder import RunFolder

    lines = ["| setting | seeds | round | test accuracy, whole split (recorded) | held-out half (even indices) |",
             "|---|---|---|---|---|"]
    for setting in sorted(p for p in sweep_dir.glob("setting_*") if p.is_dir()):
        whole, held, rnd = [], [], None
        for run in sorted(setting.glob("seed_*")):
            cfg = load_config(run / "config.toml")
            last = sorted((run / "captures").glob("round_*"))[-1]
            update = load_update(next(iter(sorted(last.glob("*.safetensors")))))
            rnd = update.server_round - 1
            recorded = {r.round: r.test_accuracy for r in RunFolder(run).rows(UtilityRow)}[rnd]
            model = E.make_model(cfg)
            model.load_state_dict({**update.weights_before, **update.buffers_before})
            x, y = E.test_data(cfg)
            acc, _ = evaluate(model, x, y)
            if abs(acc - recorded) > 1e-9:
                raise RuntimeError(f"{run}: rebuilt model scores {acc} on the test split, recorded {recorded}")
            whole.append(acc)
            held.append(evaluate(model, x[E.HELDOUT], y[E.HELDOUT])[0])

        def fmt(values):
            m, lo, hi = t_interval(values)
            return f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{m:.3f}"
        lines.append(f"| {setting.name} | {len(whole)} | {rnd} | {fmt(whole)} | {fmt(held)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = h.parser(__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tune", help="pick train.lr (and the clip norm of DP kinds) per setting family")
    t.add_argument("--base", default=str(h.ROOT / "configs" / "defense_fedsgd.toml"))
    t.add_argument("--families", default=",".join(GRIDS), help=f"comma-separated of {', '.join(GRIDS)}")
    t.add_argument("--rounds", type=int, default=0, help="rounds (default: the base's run.num_rounds)")
    t.add_argument("--out", default="", help="JSON file (updated in place, one entry per family)")
    t.add_argument("--lrs", default=",".join(map(str, LRS)), help="learning-rate grid")
    t.add_argument("--pairs", default="", help="explicit combinations instead of the grid, e.g. '1.0:1.0,0.3:4.0' "
                   "(lr:clip)")
    tb = sub.add_parser("table", help="markdown table of a sweep's sweep.jsonl")
    tb.add_argument("jsonl")
    ho = sub.add_parser("heldout", help="held-out-half test accuracy of a finished sweep's runs (post hoc)")
    ho.add_argument("sweep_dir")
    args = h.parse(p, argv)
    if args.cmd == "table":
        print(table(Path(args.jsonl)))
        return 0
    torch.set_num_threads(1)
    if args.cmd == "heldout":
        if not any(Path(args.sweep_dir).glob("setting_*/seed_*")):
            raise SystemExit(f"heldout: {args.sweep_dir} holds no setting_*/seed_* run folders of a sweep")
        print(heldout(Path(args.sweep_dir)))
        return 0
    base = Path(args.base)
    rounds = args.rounds or from_flat(flatten(read_toml(base, "base"))).run.num_rounds
    tune(base, [f for f in args.families.split(",") if f], rounds, Path(args.out) if args.out else None,
         tuple(float(v) for v in args.lrs.split(",")),
         [tuple(float(x) for x in p.split(":")) for p in args.pairs.split(",") if p] or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
