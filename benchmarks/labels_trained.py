"""Trained-model section of the label benchmark (issue 11): every registered label method on models after
0 / 100 / 300 / 1000 SGD steps, FedSGD and FedAvg, MNIST (CNN, FCN-3) and a CIFAR-shaped photo-crop stand-in.
Run through ``python -m benchmarks.labels --only trained-mnist-convnet`` (and the other ``trained-*`` sections); results in docs/benchmarks/labels.md.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from fedsim.attacks.gradients import batch_gradient, weights_to_fake_gradient
from fedsim.core.data import load_dataset
from fedsim.core.metrics.labels import label_metrics
from fedsim.core.models.zoo import build_model


def photo_crops(gen: torch.Generator):
    """CIFAR-shaped stand-in (fedsim's): 3x32x32 crops of 10 colour photos shipped in scikit-image / scikit-learn,
    label = which photo. Each photo (resized to height 128) is cut into 4 vertical strips: strips 0-1 give
    pretraining crops, strip 2 the public split, strip 3 the victims (disjoint pixels)."""
    import skimage.data as sk
    from sklearn.datasets import load_sample_images

    photos = [sk.astronaut(), sk.chelsea(), sk.coffee(), sk.hubble_deep_field(), sk.immunohistochemistry(),
              sk.rocket(), sk.retina(), sk.stereo_motorcycle()[0], *load_sample_images().images]
    parts = {"pre": [], "pub": [], "vic": []}
    for label, img in enumerate(photos):
        t = torch.from_numpy(img[..., :3].copy()).permute(2, 0, 1).float()[None] / 255.0
        h, w = t.shape[-2:]
        t = nn.functional.interpolate(t, size=(128, max(128, round(128 * w / h))), mode="area")[0]
        strip = t.shape[-1] // 4
        for name, (lo, hi), n in (("pre", (0, 2 * strip), 400), ("pub", (2 * strip, 3 * strip), 50),
                                  ("vic", (3 * strip, 4 * strip), 200)):
            ys = torch.randint(0, 128 - 32 + 1, (n,), generator=gen)
            xs = torch.randint(lo, hi - 32 + 1, (n,), generator=gen)
            crops = torch.stack([t[:, y:y + 32, x:x + 32] for y, x in zip(ys.tolist(), xs.tolist())])
            parts[name].append((crops, torch.full((n,), label)))
    out = {k: (torch.cat([c for c, _ in v]), torch.cat([y for _, y in v])) for k, v in parts.items()}
    mean = out["pre"][0].mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    std = out["pre"][0].std(dim=(0, 2, 3)).view(1, 3, 1, 1)
    return {k: ((x - mean) / std, y) for k, (x, y) in out.items()}


def trained_pools(data: str):
    """(pretraining pool, public split, victim pool, input shape): three disjoint sets of (inputs, labels)."""
    gen = torch.Generator().manual_seed(0)
    if data == "photos":
        p = photo_crops(gen)
        return p["pre"], p["pub"], p["vic"], (3, 32, 32)
    from fedsim.attacks.generative import aux_split

    ds = load_dataset("mnist_subset")
    perm = torch.randperm(len(ds.train_x), generator=gen)
    half = len(perm) // 2
    x, y = ds.normalize(ds.train_x), ds.train_y
    ax, ay = aux_split(ds, "test-half")  # the server's public split: even-indexed test images
    return (x[perm[:half]], y[perm[:half]]), (ds.normalize(ax), ay), (x[perm[half:]], y[perm[half:]]), (1, 28, 28)


def checkpoints(kind: str, shape, pre, steps=(0, 100, 300, 1000), lr=0.05, batch=64):
    """State dicts after 0/100/300/1000 plain-SGD steps (batch 64, lr 0.05) on the pretraining pool."""
    model = build_model(kind, shape, 10, seed=0, **({"hidden": (300, 300)} if kind == "fcn3" else {}))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    gen, out = torch.Generator().manual_seed(1), {}
    for s in range(max(steps) + 1):
        if s in steps:
            out[s] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if s == max(steps):
            break
        idx = torch.randint(0, len(pre[1]), (batch,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(pre[0][idx]), pre[1][idx]).backward()
        opt.step()
    return model, out


def client_update(model, state, x, y, local_steps, lr=0.05):
    """Fake gradient of a client that ran ``local_steps`` SGD steps on equal slices of (x, y) from ``state``."""
    model.load_state_dict(state)
    if local_steps == 1:
        return batch_gradient(model, x, y)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for xb, yb in zip(x.chunk(local_steps), y.chunk(local_steps)):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.load_state_dict(state)
    return weights_to_fake_gradient(before, after, lr, local_steps)


def uniform_guess(k: int, c: int) -> dict:
    """Counts as even as possible (no gradient used): the floor that any method must beat."""
    from fedsim.core.types import LabelRestoration

    counts = torch.full((c,), k // c)
    counts[: k % c] += 1
    return LabelRestoration("uniform", counts, torch.repeat_interleave(torch.arange(c), counts))


TRAINED_METHODS = ["idlg", "gi", "gi-ext", "rlg", "llg", "llg+", "geng", "geng-bias", "ilrg", "ilrg-prior",
                   "ilrg-refine", "soft", "aux-nnls"]


INTRO = ["## Trained models (issue 11): LnAcc / InstAcc after 0-1000 SGD steps", "",
           "Each model is pretrained with plain SGD (batch 64, lr 0.05) on a pool disjoint from the victims and from "
           "the public split; checkpoints after 0 / 100 / 300 / 1000 steps. A client batch of B victims (IID from "
           "the victim pool) gives a FedSGD gradient, or a FedAvg fake gradient after T = 4 local steps of B "
           "(lr 0.05; K = 4B sample visits). `aux-nnls` gets the public split (`aux=`), `lr` and `local_steps`; "
           "every other method gets what it always gets. `uniform` = counts spread evenly without looking at the "
           "gradient (the floor). `aux-nnls (oracle stats)` = a diagnostic, not an attack: the class statistics are "
           "taken from 1000 samples of the victim pool (the pool the batch is drawn from, 100 per class) instead of the public split, "
           "so it shows what exact class statistics would buy (FedSGD tables only). Cells: LnAcc / InstAcc, mean over the trials; `-` = method not applicable "
           "(rlg needs K < C) or failed. Test accuracy (held-out) of each checkpoint in the header.", ""]


def trained_models(data: str, kind: str, trials: int, run_methods: Callable, average: Callable,
                   intro: bool = False) -> list[str]:
    """Tables (FedSGD, FedAvg T = 4) for one (data, model) setting; ``intro`` prepends the section text."""
    out = list(INTRO) if intro else []
    pre, pub, vic, shape = trained_pools(data)
    model, states = checkpoints(kind, shape, pre)
    accs, spread = {}, []
    for s, st in states.items():
        model.load_state_dict(st)
        with torch.no_grad():
            p = torch.softmax(model(vic[0][:1000]).double(), -1)
        accs[s] = float((p.argmax(1) == vic[1][:1000]).double().mean())
        miss = 1.0 - p[torch.arange(len(p)), vic[1][:1000]]  # a sample's gradient scales with 1 - p_y
        spread.append(f"{s} st.: acc {accs[s]:.2f}, 1 - p_y median {float(miss.median()):.3f}, mean "
                      f"{float(miss.mean()):.3f}, share < 0.01: {float((miss < 0.01).double().mean()):.2f}")
    out += [f"{kind} / {data} checkpoints (1000 victims): " + "; ".join(spread) + ".", ""]
    for steps_local in (1, 4):
        cols = [(s, b) for s in states for b in (32, 128)]
        cells: dict = {}
        for s, b in cols:
            gen = torch.Generator().manual_seed(1000 * s + b)
            rows = []
            for _ in range(trials):
                idx = torch.randperm(len(vic[1]), generator=gen)[:b * steps_local]
                x, y = vic[0][idx], vic[1][idx]
                grads = client_update(model, states[s], x, y, steps_local)
                k = b * steps_local
                r = run_methods(model, grads, k, y, 10, TRAINED_METHODS, shape, aux=pub, lr=0.05,
                                local_steps=steps_local)
                met = label_metrics(y, uniform_guess(k, 10), 10)
                r["uniform"] = {**met, "seconds": 0.0, "presence_only": False}
                if steps_local == 1:  # the diagnostic only for FedSGD (CPU budget)
                    oracle = run_methods(model, grads, k, y, 10, ["aux-nnls"], shape, aux=vic, max_aux=1000)
                    r["aux-nnls (oracle stats)"] = oracle["aux-nnls"]
                rows.append(r)
            cells[(s, b)] = average(rows)
        algo = "FedSGD" if steps_local == 1 else f"FedAvg T = {steps_local}"
        out += [f"### {kind} / {data}, {algo}", "",
                "| method | " + " | ".join(f"{s} st. ({accs[s]:.2f}), B={b}" for s, b in cols) + " |",
                "|---|" + "---|" * len(cols)]
        for m in TRAINED_METHODS + ["uniform", "aux-nnls (oracle stats)"]:
            out.append(f"| {m} | " + " | ".join(
                f"{cells[c][m]['label_lnacc']:.2f} / {cells[c][m]['label_instacc']:.2f}" if m in cells[c] else "-"
                for c in cols) + " |")
        out.append("")
        print("\n".join(out), flush=True)  # partial results survive an interrupted run
    return out
