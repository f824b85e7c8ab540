"""How much ``aux-nnls``' result depends on the seed of its own shrink calibration (issue 36, part 4).

Held-out trained models (not the presets' ``convnet`` / ``lenet5``): a ReLU CNN with 5x5 convolutions and
max-pooling (defined here) after 100 and 300 plain-SGD steps, and a one-hidden-layer MLP after 100 steps, all
trained on the MNIST pretraining pool of ``labels_trained.trained_pools`` (batch 64, lr 0.05). Victims: IID batches
of B = 32 from the disjoint victim pool, FedSGD; the server's public split is the even-indexed test half (500
images). ``--alpha A`` draws each batch's class proportions from Dirichlet(A) instead (non-IID clients). For
every calibration seed the same batches are attacked; LnAcc per seed is the mean over the batches.

    python -m benchmarks.labels_aux_calibration [--seeds 8] [--batches 12] [--alpha 0.3] [--impl FILE.py]

``--impl`` loads ``restore_aux_nnls`` from another file (e.g. the pre-fix aux.py from ``git show``) to compare.
"""

from __future__ import annotations

import importlib.util
import statistics
import time

import torch
from torch import nn

from benchmarks import harness as h
from benchmarks.labels_trained import trained_pools, uniform_guess
from fedsim.attacks.gradients import batch_gradient
from fedsim.core.metrics.labels import label_metrics


class CNN5(nn.Module):
    """Held-out CNN: two 5x5 conv + ReLU + 2x2 max-pool blocks (16, 32 channels), a 128-unit ReLU layer."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                      nn.Linear(32 * 7 * 7, 128), nn.ReLU())
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


MODELS = {"cnn5-100": (CNN5, 100), "cnn5-300": (CNN5, 300), "mlp-100": (mlp, 100)}


def train(factory, steps: int, pre) -> nn.Module:
    torch.manual_seed(0)
    model = factory()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        idx = torch.randint(0, len(pre[1]), (64,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(pre[0][idx]), pre[1][idx]).backward()
        opt.step()
    return model


def load_impl(path: str | None):
    if path is None:
        from fedsim.attacks.labels.aux import restore_aux_nnls
        return restore_aux_nnls
    spec = importlib.util.spec_from_file_location("aux_impl", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.restore_aux_nnls


def main() -> None:
    ap = h.parser(__doc__)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--alpha", type=float, default=0.0, help="Dirichlet class proportions per batch (0: IID)")
    ap.add_argument("--impl", default=None, help="a file defining restore_aux_nnls (default: the installed one)")
    args = h.parse(ap)
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the Dirichlet batch proportions
    restore = load_impl(args.impl)
    pre, pub, vic, _ = trained_pools("mnist")
    for name in args.models.split(","):
        factory, steps = MODELS[name]
        model = train(factory, steps, pre)
        with torch.no_grad():
            acc = float((model(vic[0][:1000]).argmax(1) == vic[1][:1000]).double().mean())
        gen = torch.Generator().manual_seed(7)
        batches = []
        by_class = [torch.nonzero(vic[1] == c).flatten() for c in range(10)]
        for _ in range(args.batches):
            idx = torch.randperm(len(vic[1]), generator=gen)[:32]
            if args.alpha > 0:
                props = torch.distributions.Dirichlet(torch.full((10,), args.alpha)).sample()
                labels = torch.multinomial(props, 32, replacement=True, generator=gen)
                idx = torch.stack([by_class[c][torch.randint(0, len(by_class[c]), (1,), generator=gen)][0]
                                   for c in labels.tolist()])
            batches.append((vic[1][idx], batch_gradient(model, vic[0][idx], vic[1][idx])))
        uni = statistics.mean(label_metrics(y, uniform_guess(32, 10), 10)["label_lnacc"] for y, _ in batches)
        per_seed, shrinks, secs = [], [], []
        for seed in range(args.seeds):
            scores = []
            for y, grads in batches:
                t0 = time.process_time()
                res = restore(model, grads, 32, aux=pub, seed=seed)
                secs.append(time.process_time() - t0)
                scores.append(label_metrics(y, res, 10)["label_lnacc"])
                shrinks.append(res.extras["shrink"])
            per_seed.append(statistics.mean(scores))
        clients = f"Dirichlet({args.alpha})" if args.alpha > 0 else "IID"
        print(f"{name} (acc {acc:.2f}), {clients} batches of 32: LnAcc over {args.seeds} calibration seeds x "
              f"{args.batches} batches: "
              f"min {min(per_seed):.3f} median {statistics.median(per_seed):.3f} max {max(per_seed):.3f} "
              f"mean {statistics.mean(per_seed):.3f} | per seed {[round(s, 3) for s in per_seed]} | "
              f"shrink chosen {sorted(set(round(s, 3) for s in shrinks))} | uniform {uni:.3f} | "
              f"CPU s/attack {statistics.mean(secs):.2f}", flush=True)


if __name__ == "__main__":
    main()
