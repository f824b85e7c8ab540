"""Where the ``ig`` objective itself leads: Inverting Gradients started at the true images instead of noise.

If the gradient-matching + TV objective had its minimum at the client's images, a run started there (plus a little
noise, 0.1 in model space, ~33 dB) would stay there; the PSNR it drifts to bounds what any optimiser of that
objective reaches from a random start, on that model. The case is the DP frontier's base
(``configs/defense_fedsgd.toml``: MNIST, untrained ReLU ConvNet width 8, FedSGD batch 8, labels given), with the
victims of ``benchmarks/shadow_mnist.py`` (train-split digits, K per seed, model seeded by the seed). The warm
start uses the matching loss's scale of the random start (the engine divides the matching loss by its value at
the initial point, which near the truth is ~0: the TV weight would be 100x stronger than in a real run), so both
runs optimise the same objective. Also run: ``gias`` (generative prior: the live default VAE trained on the
public split, ``--prior-shift`` / ``--prior-steps`` for another) from its usual random latent start, each
result's server-side criterion (``grad-cosine@W0``), and the prior's capacity: the PSNR of the true images
projected onto the decoder (the best latent code by pixel error, Adam 800 steps), a ceiling for ``ggl`` and,
before its generator stage, for ``gias``.

    nice -n 5 .venv/bin/python benchmarks/objective_at_truth.py [--seeds 0 1 2] [--steps 400] [--tv 0.2 2.0]
        [--prior-shift 1] [--prior-steps 6000] [--prior-arch mlp|conv] [--prior-hidden N] [--prior-path P]
        [--gias '{}' '{"restarts": 16}' ...] [--model lenet5 --model-options '{"activation": "sigmoid"}']
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fedsim.attacks.generative import aux_split, get_prior
from fedsim.attacks.inversion import invert
from fedsim.attacks.inversion.criterion import gradient_cosine_distance
from fedsim.attacks.inversion.optim import init_dummy
from fedsim.attacks.inversion.shadow import simulate_update
from fedsim.core.data import load_dataset
from fedsim.core.metrics.images import image_metrics, psnr_matrix
from fedsim.core.models.zoo import build_model

K = 8
FRONTIER_MODEL_OPTIONS = {"activation": "relu", "width": 8}  # configs/defense_fedsgd.toml's ConvNet


def projection_psnr(prior, pixels: torch.Tensor, steps: int = 800) -> float:
    """Mean PSNR of ``pixels`` [K, C, H, W] in [0, 1] after projection onto the prior's decoder."""
    z = torch.zeros(len(pixels), prior.latent_dim, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        (prior.decoder(z).view_as(pixels) - pixels).pow(2).sum().backward()
        opt.step()
    with torch.no_grad():
        return float(psnr_matrix(prior.decoder(z).view_as(pixels), pixels).diagonal().mean())


def cell(data, seed: int, steps: int, tvs: list[float], prior, variants: list[dict], model_name: str,
         model_options: dict) -> dict:
    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(4321))
    idx = order[K * seed:K * seed + K]
    y = data.train_y[idx].clone()
    perm = y.argsort(stable=True)  # the attack's images are in label order; the warm start must be too
    x, y = data.normalize(data.train_x[idx])[perm], y[perm]
    model = build_model(model_name, data.input_shape, data.num_classes, seed=seed, **model_options).train()
    target = simulate_update(model, x, y, lr=0.1, local_steps=1, local_batch_size=K)
    common = dict(model=model, gradients=target, labels=y, input_shape=data.input_shape, steps=steps,
                  mean=data.mean, std=data.std, seed=seed, return_result=True)
    psnr = lambda xh: image_metrics(xh.detach(), x, data.mean, data.std, labels_hat=y, labels_true=y)["psnr"]  # noqa: E731
    crit = lambda xh: gradient_cosine_distance(model, xh, y, target)  # noqa: E731
    mean = torch.tensor(data.mean).view(-1, 1, 1)
    std = torch.tensor(data.std).view(-1, 1, 1)
    random0 = init_dummy("randn", (1, K) + tuple(data.input_shape), mean, std, torch.Generator().manual_seed(seed))[0]
    scale = crit(random0)  # the matching loss the engine divides by in a random-start run
    start = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(100 + seed))
    row = {"seed": seed, "start_psnr": psnr(start), "truth_criterion": crit(x), "tv": {}}
    for tv in tvs:
        rand = invert("ig", regularizers={"tv": tv}, **common)
        warm = invert("ig", regularizers={"tv": tv * scale}, normalize_match=False, init_inputs=start, **common)
        row["tv"][str(tv)] = {"random_psnr": psnr(rand.inputs), "random_criterion": crit(rand.inputs),
                              "warm_psnr": psnr(warm.inputs), "warm_criterion": crit(warm.inputs)}
    row["projection_psnr"] = projection_psnr(prior, data.train_x[idx][perm].float())
    row["gias"] = []
    for opts in variants:
        t0 = time.perf_counter()
        g = invert("gias", prior=prior, **common, **opts)
        row["gias"].append({"psnr": psnr(g.inputs), "criterion": crit(g.inputs),
                            "seconds": time.perf_counter() - t0})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--tv", type=float, nargs="*", default=[0.2, 2.0], help="ig's TV weights (none: gias only)")
    ap.add_argument("--prior-shift", type=int, default=1, help="train_prior's shift_augment (0: the earlier prior)")
    ap.add_argument("--prior-steps", type=int, default=6000, help="train_prior's steps (3000: the earlier prior)")
    ap.add_argument("--prior-arch", default="conv", help="train_prior's decoder arch (mlp, conv)")
    ap.add_argument("--prior-hidden", type=int, default=None, help="train_prior's hidden width (default per arch)")
    ap.add_argument("--prior-path", type=Path, default=None,
                    help="keep the trained prior here (reused when its recorded settings match)")
    ap.add_argument("--gias", nargs="+", default=["{}"],
                    help="gias option sets to compare, each a JSON object (e.g. '{\"restarts\": 16}')")
    ap.add_argument("--model", default="convnet", help="zoo model of the victims (default: the frontier's ConvNet)")
    ap.add_argument("--model-options", default=None,
                    help='its options as JSON (default for convnet: {"activation": "relu", "width": 8})')
    args = ap.parse_args()
    model_options = (json.loads(args.model_options) if args.model_options
                     else FRONTIER_MODEL_OPTIONS if args.model == "convnet" else {})
    variants = [json.loads(v) for v in args.gias]
    torch.set_num_threads(1)
    data = load_dataset("mnist_subset")
    settings = dict(shift_augment=args.prior_shift, steps=args.prior_steps, arch=args.prior_arch,
                    hidden=args.prior_hidden)
    with tempfile.TemporaryDirectory() as tmp:  # get_prior keeps a current file and retrains a missing or stale one
        prior = get_prior(args.prior_path or Path(tmp) / "vae.safetensors", aux_images=aux_split(data)[0],
                          dataset="mnist_subset", **settings)
        print(f"prior: {prior.settings}, " + (f"trained in {prior.train_seconds:.0f} s" if prior.train_seconds
                                              else f"loaded from {args.prior_path}"))
    rows = [cell(data, s, args.steps, args.tv, prior, variants, args.model, model_options) for s in args.seeds]
    print(f"victim model: {args.model} {model_options or ''}")
    print(f"`ig` {args.steps} iterations, seeds {' '.join(map(str, args.seeds))}; warm start at "
          f"{statistics.mean(r['start_psnr'] for r in rows):.1f} dB (truth + N(0, 0.1)); criterion at the truth "
          f"{max(r['truth_criterion'] for r in rows):.1e} at most\n")
    print("| TV | random start: PSNR | criterion | start at the truth: PSNR | criterion |\n|---|---|---|---|---|")
    for tv in args.tv:
        m = lambda k: statistics.mean(r["tv"][str(tv)][k] for r in rows)  # noqa: E731
        per = lambda k: " / ".join(f"{r['tv'][str(tv)][k]:.1f}" for r in rows)  # noqa: E731
        print(f"| {tv:g} | {m('random_psnr'):.2f} ({per('random_psnr')}) | {m('random_criterion'):.4f} | "
              f"{m('warm_psnr'):.2f} ({per('warm_psnr')}) | {m('warm_criterion'):.4f} |")
    proj = statistics.mean(r["projection_psnr"] for r in rows)
    per_proj = " / ".join(f"{r['projection_psnr']:.1f}" for r in rows)
    print(f"\nprior {args.prior_arch}, shift {args.prior_shift}, {args.prior_steps} steps: capacity (truth projected) "
          f"{proj:.2f} dB ({per_proj})\n")
    print("| `gias` options (random latent start) | PSNR | criterion | s / attack |\n|---|---|---|---|")
    for i, opts in enumerate(variants):
        gm = lambda k: statistics.mean(r["gias"][i][k] for r in rows)  # noqa: E731
        per_seed = " / ".join(f"{r['gias'][i]['psnr']:.1f}" for r in rows)
        per_crit = " / ".join(f"{r['gias'][i]['criterion']:.2e}" for r in rows)
        print(f"| {json.dumps(opts) if opts else 'defaults'} | {gm('psnr'):.2f} ({per_seed}) | {gm('criterion'):.4f} "
              f"({per_crit}) | {gm('seconds'):.0f} |")


if __name__ == "__main__":
    main()
