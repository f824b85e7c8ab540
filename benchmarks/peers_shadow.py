"""``ig-shadow`` on the peer benchmark's cases, beside fedsim ``ig`` and breaching's IG from the committed runs.

    nice -n 5 .venv/bin/python benchmarks/peers_shadow.py [--models cnn] [--batches 1,4,8,16] [--seeds 3]
                                                         [--steps 300] [--breaching-steps 300] [--json FILE]

Same cells as ``benchmarks/peers.py`` table (a) (untrained victim in train mode, FedSGD gradient of real CIFAR-10
images of foolbox, labels given, the same seed and budget); the ``ig`` and breaching PSNRs are read from the
committed ``docs/benchmarks/peers_<model>.json`` (breaching is a benchmark-only peer and is not needed here);
``ig`` (today's default) and ``ig-shadow`` are run for real, and the committed ``ig`` PSNR is shown beside the new one
as a check that the cell is the same computation. The server's public split: the 20 foolbox CIFAR-100 images with their labels taken
mod 10 (another dataset than the victims', as the CIFAR-10 split has no 16 images besides a batch of 16; for the
untrained victims the labels only fix the shadow batch's class composition).
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
from peers import case, score  # noqa: E402  (the peer benchmark's own cells and scoring)

from fedsim.attacks.inversion import invert  # noqa: E402
from fedsim.core.data.victims import load_victims  # noqa: E402

DOCS = Path(__file__).resolve().parent / "results"


def public_split(mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _, _, _ = load_victims("cifar100")
    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    return (x - m) / s, y % 10


def committed(model: str) -> dict:
    cells = json.loads((DOCS / f"peers_{model}.json").read_text())["cells"]
    return {(c["k"], c["seed"], c["steps"]): c for c in cells if c.get("source", c["labels"]) == "given"}


def run(model_name: str, k: int, seed: int, steps: int, ref: dict, peer_steps: int | None = None) -> dict:
    """One cell; breaching's PSNR is read at ``peer_steps`` (default ``steps``: equal budgets; twice ``steps``:
    fedsim at half breaching's budget)."""
    model, grads, gt, y, mean, std = case(model_name, k, seed)
    labels = y.sort().values
    t0 = time.perf_counter()
    trace = invert("ig-shadow", model=model, gradients=grads, labels=labels, input_shape=(3, 32, 32), steps=steps,
                   mean=mean, std=std, seed=seed, aux=public_split(mean, std), return_result=True, lr=0.1,
                   local_steps=1, local_batch_size=k)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = invert("ig", model=model, gradients=grads, labels=labels, input_shape=(3, 32, 32), steps=steps,
                   mean=mean, std=std, seed=seed).detach()
    ig_seconds = time.perf_counter() - t0
    peer_steps = int(peer_steps or steps)
    c = ref[(k, seed, peer_steps)]
    return {"model": model_name, "k": k, "seed": seed, "steps": steps, "tv": trace.options["tv_chosen"],
            "attack_lr": trace.options.get("attack_lr_chosen", 0.1), "breaching_steps": peer_steps,
            "shadow": score(trace.inputs.detach(), gt, labels, y, mean, std), "ig": score(plain, gt, labels, y, mean, std),
            "ig_committed": c["fedsim"] if peer_steps == steps else None, "breaching": c["breaching"],
            "seconds": seconds, "ig_seconds": ig_seconds}


def table(rows: list[dict]) -> str:
    lines = ["| model | batch | seeds | iters fedsim / breaching | fedsim `ig` (default TV; committed run) | fedsim "
             "`ig-shadow` (TV, step size per seed) | breaching IG (committed run) | "
             "`ig-shadow` - breaching | `ig-shadow` - `ig` | seconds `ig-shadow` / `ig` |", "|" + "---|" * 10]
    for key in dict.fromkeys((r["model"], r["k"], r["steps"], r.get("breaching_steps", r["steps"])) for r in rows):
        cells = [r for r in rows if (r["model"], r["k"], r["steps"], r.get("breaching_steps", r["steps"])) == key]
        m = lambda f: statistics.mean(c[f] for c in cells)  # noqa: E731
        tvs = "/".join(f"{c['tv']:g}" + (f", {c['attack_lr']:g}" if "attack_lr" in c else "") for c in cells)
        committed_ig = f"{m('ig_committed'):.2f}" if all(c["ig_committed"] is not None for c in cells) else "-"
        lines.append(f"| {key[0]} | {key[1]} | {len(cells)} | {key[2]} / {key[3]} | {m('ig'):.2f}; {committed_ig} | "
                     f"{m('shadow'):.2f} ({tvs}) | "
                     f"{m('breaching'):.2f} | {m('shadow') - m('breaching'):+.2f} | {m('shadow') - m('ig'):+.2f} | "
                     f"{m('seconds'):.0f} / {m('ig_seconds'):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cnn")
    p.add_argument("--batches", default="1,4,8,16")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--breaching-steps", type=int, default=None,
                   help="read breaching's committed run at this budget (default --steps; 300 with --steps 150: "
                        "fedsim at half breaching's budget)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--render", default=None)
    args = p.parse_args(argv)
    if args.render:
        print(table(json.loads(Path(args.render).read_text())))
        return 0
    torch.set_num_threads(args.threads)
    rows = []
    for model_name in args.models.split(","):
        ref = committed(model_name)
        for k in (int(b) for b in args.batches.split(",")):
            for seed in range(args.seeds):
                rows.append(run(model_name, k, seed, args.steps, ref, args.breaching_steps))
                print(json.dumps(rows[-1]), flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
