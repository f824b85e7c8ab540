"""Inverting Gradients on fresh FedSGD batches of MNIST digits against ConvNets of several widths (untrained).

    .venv/bin/python -m benchmarks.width_probe 8,16,32 8 400 1.0     # widths, batch, steps, TV weight

Labels given; seeds 0-2 (batch, model init, attack init); PSNR after label-aware alignment. docs/benchmarks/defenses.md.
"""

from __future__ import annotations

import torch

from benchmarks import harness as h
from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import invert
from fedsim.core.data import load_dataset
from fedsim.core.metrics.images import image_metrics
from fedsim.core.models.zoo import build_model


def main(argv: list[str] | None = None) -> int:
    p = h.parser(__doc__, threads=1)
    p.add_argument("widths", help="comma-separated ConvNet widths")
    p.add_argument("batch", type=int)
    p.add_argument("steps", type=int)
    p.add_argument("tv", type=float, help="ig's TV weight")
    args = h.parse(p, argv)
    ds = load_dataset("mnist_subset")
    for w in h.ints(args.widths):
        vals = []
        for seed in (0, 1, 2):
            g = torch.Generator().manual_seed(seed)
            idx = torch.randperm(len(ds.train_x), generator=g)[:args.batch]
            x, y = ds.normalize(ds.train_x[idx]), ds.train_y[idx]
            m = build_model("convnet", tuple(ds.input_shape), ds.num_classes, seed=seed, width=w)
            grads = [t.detach() for t in batch_gradient(m, x, y)]
            xh = invert("ig", model=m, gradients=grads, labels=y, input_shape=tuple(ds.input_shape), steps=args.steps,
                        mean=ds.mean, std=ds.std, seed=seed, regularizers={"tv": args.tv})
            vals.append(image_metrics(xh, x, ds.mean, ds.std, labels_hat=y.sort().values, labels_true=y)["psnr"])
        print(f"width {w} params {sum(p.numel() for p in m.parameters())} k={args.batch} steps={args.steps} "
              f"tv={args.tv} psnr", [round(v, 2) for v in vals], "mean %.2f" % (sum(vals) / 3), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
