"""Does simulating the client's defense on the shadow update pick a better TV weight than calibrating as if clean?

``ig-shadow`` now defends its shadow update as the client's was (``fedsim.attacks.defense_view``: the capture's public
``[defense.update]`` settings, the server's own noise draws) and, under sparsification, matches the sent coordinates
only (``ig-masked``'s distance). This compares, per defended update, the fixed default (``ig-masked`` under top-k,
``ig`` under noise, TV 2.0: what the defense sweeps replay), the shadow rule calibrated on a clean shadow, the shadow
rule calibrated on a defended shadow, and the grid's oracle (best real-run PSNR over the TV grid, ground truth: the
benchmark only). Victims: real MNIST digits of the ``mnist_subset`` train split (K = 8 per seed, disjoint across
seeds); public split ``aux_split`` as in the live pipeline; untrained ReLU ConvNets of the presets (the demo's and the
defense sweeps' width 8), FedSGD lr 0.1; the client's defense applied with the client's seed (not the server's);
labels given. A shadow pick's real-run PSNR is the grid run at that weight (same seed and steps: the real run of
``ig-shadow`` is ``ig`` at its weight, tests/test_inversion_shadow.py), or one more run beyond the grid.

    nice -n 5 .venv/bin/python benchmarks/shadow_defended.py [--seeds 3] [--steps 400] [--json FILE]
    .venv/bin/python benchmarks/shadow_defended.py --render FILE
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from fedsim.attacks.defense_view import ShadowDefense
from fedsim.attacks.generative import aux_split
from fedsim.attacks.inversion import invert
from fedsim.attacks.inversion.autotune import TV_GRID
from fedsim.attacks.inversion.shadow import EXTEND_EDGES, choose_tv, simulate_update
from fedsim.core.data import load_dataset
from fedsim.core.defense.update import UpdateDefense
from fedsim.core.metrics.images import image_metrics
from fedsim.core.models.zoo import build_model

MODELS = {"convnet-relu (demo)": {"activation": "relu"},
          "convnet-w8-relu (defense sweeps)": {"activation": "relu", "width": 8}}
DEFENSES = {"top-k 0.1": UpdateDefense(topk_ratio=0.1), "top-k 0.01": UpdateDefense(topk_ratio=0.01),
            "update noise 0.005": UpdateDefense(noise_std=0.005)}
K, LR = 8, 0.1


def cell(model_name: str, defense_name: str, seed: int, steps: int, data, aux) -> dict:
    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(4321))
    idx = order[K * seed:K * seed + K]
    x, y = data.normalize(data.train_x[idx]), data.train_y[idx].clone()
    model = build_model("convnet", data.input_shape, data.num_classes, seed=seed, **MODELS[model_name]).train()
    defense = ShadowDefense(update=DEFENSES[defense_name])
    clean = simulate_update(model, x, y, lr=LR)
    target = defense.on_fake_gradient(clean, lr=LR, local_steps=1, seed=seed)  # the client's own noise draw
    lab = y.sort().values
    distance = "cosine-masked" if defense.sparsifies else "cosine"
    common = dict(model=model, gradients=target, labels=lab, input_shape=data.input_shape, steps=steps,
                  mean=data.mean, std=data.std, seed=seed, distance=distance)
    score = lambda xh: image_metrics(xh.detach(), x, data.mean, data.std, labels_hat=lab,  # noqa: E731
                                     labels_true=y)["psnr"]
    row: dict = {"model": model_name, "defense": defense_name, "seed": seed, "distance": distance, "tv": {}}
    t0 = time.perf_counter()
    for tv in TV_GRID:
        row["tv"][str(float(tv))] = score(invert("ig", regularizers={"tv": tv}, **common))
    row["grid_seconds"] = time.perf_counter() - t0
    aux_n = (data.normalize(aux[0]), aux[1])
    pick_args = dict(model=model, aux=aux_n, labels=lab, k=K, input_shape=data.input_shape, steps=steps,
                     mean=data.mean, std=data.std, seed=seed, tv_grid=TV_GRID, extend_edges=EXTEND_EDGES,
                     schedule={"lr": LR, "local_steps": 1, "local_batch_size": K}, distance=distance)
    for key, d in (("shadow_clean", None), ("shadow_defended", defense)):
        t0 = time.perf_counter()
        chosen, by = choose_tv(defense=d, **pick_args)
        name = str(float(chosen))
        if name not in row["tv"]:
            row["tv"][name] = score(invert("ig", regularizers={"tv": chosen}, **common))
        row[key] = {"tv": chosen, "psnr": row["tv"][name], "seconds": time.perf_counter() - t0,
                    "shadow_psnr": {str(k): v for k, v in by.items()}}
    row["default"] = row["tv"]["2.0"]
    row["oracle_tv"] = max((t for t in row["tv"] if float(t) in TV_GRID), key=lambda t: row["tv"][t])
    row["oracle"] = row["tv"][row["oracle_tv"]]
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | defense | seeds | default TV 2 | shadow, clean calibration (TV) | shadow, defended calibration "
             "(TV) | grid oracle (TV) | defended - clean | defended - oracle | defended - default |",
             "|" + "---|" * 10]
    for key in dict.fromkeys((r["model"], r["defense"]) for r in rows):
        cells = [r for r in rows if (r["model"], r["defense"]) == key]
        m = lambda f: statistics.mean(f(c) for c in cells)  # noqa: E731
        picks = lambda f: "/".join(f"{float(f(c)):g}" for c in cells)  # noqa: E731
        clean, dfd = m(lambda c: c["shadow_clean"]["psnr"]), m(lambda c: c["shadow_defended"]["psnr"])
        oracle, default = m(lambda c: c["oracle"]), m(lambda c: c["default"])
        lines.append(f"| {key[0]} | {key[1]} | {len(cells)} | {default:.2f} | {clean:.2f} "
                     f"({picks(lambda c: c['shadow_clean']['tv'])}) | {dfd:.2f} "
                     f"({picks(lambda c: c['shadow_defended']['tv'])}) | {oracle:.2f} ({picks(lambda c: c['oracle_tv'])})"
                     f" | {dfd - clean:+.2f} | {dfd - oracle:+.2f} | {dfd - default:+.2f} |")
    d = [r["shadow_defended"]["psnr"] - r["shadow_clean"]["psnr"] for r in rows]
    o = [r["shadow_defended"]["psnr"] - r["oracle"] for r in rows]
    sec = [r["shadow_defended"]["seconds"] for r in rows]
    lines += ["", f"over {len(rows)} cells: defended - clean calibration mean {statistics.mean(d):+.2f} dB "
                  f"[{min(d):+.2f}, {max(d):+.2f}], better in {sum(v > 0.05 for v in d)}, worse in "
                  f"{sum(v < -0.05 for v in d)}; defended - grid oracle mean {statistics.mean(o):+.2f} dB "
                  f"[{min(o):+.2f}, {max(o):+.2f}]; seconds per defended calibration {statistics.mean(sec):.0f} "
                  f"[{min(sec):.0f}, {max(sec):.0f}]"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--render", default=None)
    args = p.parse_args(argv)
    if args.render:
        print(table(json.loads(Path(args.render).read_text())))
        return 0
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist_subset")
    aux = aux_split(data)
    rows = []
    for model_name in MODELS:
        for defense_name in DEFENSES:
            for seed in range(args.seeds):
                rows.append(cell(model_name, defense_name, seed, args.steps, data, aux))
                r = rows[-1]
                print(json.dumps({"model": model_name, "defense": defense_name, "seed": seed,
                                  "clean": r["shadow_clean"]["tv"], "defended": r["shadow_defended"]["tv"],
                                  "psnr": [round(r["shadow_clean"]["psnr"], 2), round(r["shadow_defended"]["psnr"], 2),
                                           round(r["oracle"], 2)]}), flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
