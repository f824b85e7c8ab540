"""Reported-loss benchmark: does the client's reported training loss help the curious server judge its
reconstructions (issue 24)?

    nice -n 10 .venv/bin/python -m benchmarks.reported_loss [--steps 200] [--seeds 0 1 2] [--out docs/benchmarks/reported_loss.md]

Victims: 8 MNIST images per case (``load_dataset("mnist_subset")`` train split, shuffled once, a different 8 per seed), the zoo
ConvNet (untrained, or trained 40 SGD steps on 2,400 other train images), one FedSGD step (lr 0.05). The client's
``train_loss`` is the batch's mean cross-entropy at W0 (``fedsim.core.training.train_locally``). Per case the
attacker has several reconstructions (``ig`` at TV 0 / 1e-3 / 1e-2 / 1e-1 and ``dlg``, two restarts each, true
labels given to isolate the image side) and two no-ground-truth scores: the gradient cosine distance (the
pipeline's criterion) and the loss gap |CE(x_hat, y) - reported| (``fedsim.attacks.reported_loss``), and their
rank average ("combo", no weight to tune). Reported: Spearman rho between each score (negated) and the aligned
PSNR over the candidates, and the PSNR lost by picking with each score instead of the oracle (best PSNR).

Label side: ``ig`` (TV 1e-2) run with the true labels and with two wrong label vectors (one sample's label moved
to another class); does each score pick the true labels?
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from scipy.stats import rankdata, spearmanr

from benchmarks import harness as h
from fedsim.attacks.inversion import invert
from fedsim.attacks.inversion.criterion import gradient_cosine_distance
from fedsim.attacks.reported_loss import simulated_mean_loss
from fedsim.core.data import load_dataset
from fedsim.core.models.zoo import build_model
from fedsim.core.training import train_locally

K, LR = 8, 0.05
CANDIDATES = [("ig", tv) for tv in (0.0, 1e-3, 1e-2, 1e-1)] + [("dlg", None)]
RESTARTS = (0, 1)
SCORES = ("cosine", "loss gap", "combo")


def _order(data) -> torch.Tensor:
    """A fixed shuffle of the train split (it is sorted by class): victims from its head, training from its tail."""
    return torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(1234))


def victim_model(data, trained: bool, seed: int):
    model = build_model("convnet", data.input_shape, data.num_classes, seed=seed)
    if trained:  # 40 SGD steps, batch 32, on 2,400 train images the victims are not among
        g = torch.Generator().manual_seed(seed)
        pool = _order(data)[1000:3400]
        xs, ys = data.normalize(data.train_x[pool]), data.train_y[pool]
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(40):
            idx = torch.randint(0, len(xs), (32,), generator=g)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
            opt.step()
    return model.train()


def client_update(model, x, y):
    """(fake gradient, reported loss) of one FedSGD step, as the client's own training computes it."""
    w0 = [p.detach().clone() for p in model.parameters()]
    client = build_model("convnet", tuple(x.shape[1:]), 10, seed=0)
    client.load_state_dict(model.state_dict())
    result = train_locally(client, x, y, algorithm="fedsgd", lr=LR, epochs=1, batch_size=K, seed=0,
                           server_round=1, client_id=0)
    grads = [(a - b.detach()) / LR for a, b in zip(w0, client.parameters())]
    return grads, result.mean_loss


def reconstruct(method, tv, model, grads, labels, data, steps, seed):
    opts = {"regularizers": {"tv": tv}} if tv is not None else {}
    return invert(method, model=model, gradients=grads, labels=labels, input_shape=data.input_shape, steps=steps,
                  mean=data.mean, std=data.std, seed=seed, **opts).detach()


def scores(model, xh, labels, grads, reported):
    return {"cosine": gradient_cosine_distance(model, xh, labels, grads),
            "loss gap": abs(simulated_mean_loss(model, xh, labels) - reported)}


def with_combo(rows):
    """Add the rank average of the two scores (lower = better)."""
    ranks = {s: rankdata([r[s] for r in rows]) for s in ("cosine", "loss gap")}
    for i, r in enumerate(rows):
        r["combo"] = (ranks["cosine"][i] + ranks["loss gap"][i]) / 2
    return rows


def run_case(data, trained: bool, seed: int, steps: int) -> dict:
    t0 = time.perf_counter()
    idx = _order(data)[K * seed:K * seed + K]
    x, y = data.normalize(data.train_x[idx]), data.train_y[idx].clone()
    model = victim_model(data, trained, seed)
    grads, reported = client_update(model, x, y)
    rows = []
    for method, tv in CANDIDATES:
        for restart in RESTARTS:
            xh = reconstruct(method, tv, model, grads, y, data, steps, 10 * seed + restart)
            rows.append({"method": method, "tv": tv, "restart": restart,
                         "psnr": h.aligned_psnr(xh, x, data.mean, data.std), **scores(model, xh, y, grads, reported)})
    with_combo(rows)
    psnr = [r["psnr"] for r in rows]
    out = {"trained": trained, "seed": seed, "reported": reported, "rows": rows,
           "rho": {s: float(spearmanr([-r[s] for r in rows], psnr).statistic) for s in SCORES},
           "gap": {s: max(psnr) - min(rows, key=lambda r: r[s])["psnr"] for s in SCORES}}
    out["labels"] = label_case(model, grads, reported, x, y, data, steps, seed)
    out["seconds"] = time.perf_counter() - t0
    return out


def label_case(model, grads, reported, x, y, data, steps, seed) -> dict:
    """Which label vector does each score prefer: the true one (index 0) or one of two with a label moved?"""
    g = torch.Generator().manual_seed(seed)
    options = [y]
    for _ in range(2):
        wrong = y.clone()
        i = int(torch.randint(0, K, (1,), generator=g))
        wrong[i] = (wrong[i] + 1 + int(torch.randint(0, 9, (1,), generator=g))) % 10
        options.append(wrong)
    rows = [scores(model, reconstruct("ig", 1e-2, model, grads, lab, data, steps, seed), lab, grads, reported)
            for lab in options]
    with_combo(rows)
    return {s: min(range(len(rows)), key=lambda i: rows[i][s]) == 0 for s in SCORES}


def spread(values) -> str:
    return f"{statistics.mean(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def _name(row: dict) -> str:
    tv = "" if row["tv"] is None else f" tv={row['tv']:g}"
    return f"{row['method']}{tv}#{row['restart']}"


def page(cases, args, seconds: float) -> str:
    lines = ["# Reported training loss as a reconstruction check (issue 24)", "",
             f"Command: `nice -n 10 {args.command}` ({seconds / 60:.1f} min). Machine: {h.machine()}, no GPU.", "",
             "Mean [min, max] over seeds. rho: Spearman between the negated score and the aligned PSNR over the "
             f"{len(CANDIDATES) * len(RESTARTS)} reconstructions of a case (higher = the score ranks them better); "
             "lost: PSNR of the oracle's pick minus the score's pick (dB, lower = better).", "",
             "| model | reported loss | rho cosine | rho loss gap | rho combo | lost cosine | lost loss gap "
             "| lost combo | true labels picked (cos / gap / combo) |", "|" + "---|" * 9]
    for trained in (False, True):
        cs = [c for c in cases if c["trained"] == trained]
        picks = " / ".join(f"{sum(c['labels'][s] for c in cs)}/{len(cs)}" for s in SCORES)
        lines.append("| " + " | ".join([
            "trained" if trained else "untrained", spread([c["reported"] for c in cs]),
            *(spread([c["rho"][s] for c in cs]) for s in SCORES),
            *(spread([c["gap"][s] for c in cs]) for s in SCORES), picks]) + " |")
    lines += ["", "Per case (PSNR dB, cosine distance, loss gap of every reconstruction):", ""]
    for c in cases:
        lines.append(f"- {'trained' if c['trained'] else 'untrained'}, seed {c['seed']}, reported "
                     f"{c['reported']:.4f}: " + "; ".join(
                         f"{_name(r)} {r['psnr']:.1f}/{r['cosine']:.3g}/{r['loss gap']:.3g}" for r in c["rows"]))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = h.parser(__doc__, steps=200, seed_list=[0, 1, 2], threads=1, out=h.PAGES / "reported_loss.md")
    args = h.parse(parser)
    data = load_dataset("mnist_subset")
    t0 = time.perf_counter()
    cases = []
    for trained in (False, True):
        for seed in args.seeds:
            cases.append(run_case(data, trained, seed, args.steps))
            c = cases[-1]
            print(f"trained={trained} seed={seed} rho={c['rho']} lost={c['gap']} labels={c['labels']} "
                  f"({c['seconds']:.0f}s)", flush=True)
    text = page(cases, args, time.perf_counter() - t0)
    notes = Path(args.out)
    keep = ""
    if notes.is_file() and "<!-- notes -->" in notes.read_text():
        keep = notes.read_text().split("<!-- notes -->", 1)[1]
    notes.parent.mkdir(parents=True, exist_ok=True)
    notes.write_text(text + "\n<!-- notes -->" + keep)
    print(text)


if __name__ == "__main__":
    main()
