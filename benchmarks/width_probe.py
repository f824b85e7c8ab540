"""Inverting Gradients on fresh FedSGD batches of MNIST digits against ConvNets of several widths (untrained).

    .venv/bin/python benchmarks/width_probe.py 8,16,32 8 400 1.0     # widths, batch, steps, TV weight

Labels given; seeds 0-2 (batch, model init, attack init); PSNR after label-aware alignment. docs/benchmarks/defenses.md.
"""
import sys, torch
from fedsim.core.data import load_dataset
from fedsim.core.models.zoo import build_model
from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import invert
from fedsim.core.metrics.images import image_metrics
torch.set_num_threads(1)
ds = load_dataset("mnist_subset")
widths = [int(w) for w in sys.argv[1].split(",")]; k = int(sys.argv[2]); steps = int(sys.argv[3]); tv = float(sys.argv[4])
for w in widths:
    vals = []
    for seed in (0, 1, 2):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(ds.train_x), generator=g)[:k]
        x, y = ds.normalize(ds.train_x[idx]), ds.train_y[idx]
        m = build_model("convnet", tuple(ds.input_shape), ds.num_classes, seed=seed, width=w)
        grads = [t.detach() for t in batch_gradient(m, x, y)]
        xh = invert("ig", model=m, gradients=grads, labels=y, input_shape=tuple(ds.input_shape), steps=steps,
                    mean=ds.mean, std=ds.std, seed=seed, regularizers={"tv": tv})
        vals.append(image_metrics(xh, x, ds.mean, ds.std, labels_hat=y.sort().values, labels_true=y)["psnr"])
    print(f"width {w} params {sum(p.numel() for p in m.parameters())} k={k} steps={steps} tv={tv} psnr", [round(v,2) for v in vals], "mean %.2f" % (sum(vals)/3), flush=True)
