"""One peer cell on a device: fedsim ``ig`` (and breaching's IG when installed) on the held-out small CNN, batch 8.

    .venv/bin/python -m benchmarks.gpu_check --device cuda [--steps 300] [--json FILE]

Prints the card's name, PSNR and seconds per iteration of each attacker on the device, and fedsim's on the CPU for
the ratio. The reconstruction is scored on the device it was made on. Part of ``benchmarks/gpu_check.sh`` (the prepared check for a machine with a GPU).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from benchmarks import harness as h
from benchmarks import peers
from fedsim.attacks.inversion import invert


def fedsim_cell(device: torch.device, k: int, steps: int, seed: int = 0) -> dict:
    model, grads, gt, labels, mean, std = peers.case("cnn", k, seed)
    model = model.to(device)
    grads = [g.to(device) for g in grads]
    lab = labels.sort().values.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    x = invert("ig", model=model, gradients=grads, labels=lab, input_shape=(3, 32, 32), steps=steps, mean=mean,
               std=std, seed=seed).detach()
    if device.type == "cuda":
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / steps
    # scored where the reconstruction is (the metrics move the ground truth to it): on a GPU this exercises the
    # device path of the scoring, which a copy to the CPU first would hide (issue 33)
    t1 = time.perf_counter()
    psnr = peers.score(x, gt, labels.sort().values, labels, mean, std)
    return {"attacker": "fedsim ig", "device": str(device), "seconds_per_step": sec, "steps": steps,
            "score_seconds": time.perf_counter() - t1, "psnr": psnr}


def main(argv: list[str] | None = None) -> int:
    p = h.parser(__doc__, device="cuda", steps=300, json=None)
    p.add_argument("--batch", type=int, default=8)
    args = h.parse(p, argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False on this machine")
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = [fedsim_cell(device, args.batch, args.steps)]
    if device.type != "cpu":
        rows.append(fedsim_cell(torch.device("cpu"), args.batch, min(args.steps, 50)))
    for r in rows:
        r["card"] = card if r["device"] != "cpu" else "cpu"
        print(json.dumps(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
