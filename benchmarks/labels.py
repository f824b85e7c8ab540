"""Label restoration benchmark: every method side by side (iLRG Table 1 rows, batch sweep, FedAvg, Geng's
repetition table, trained vs untrained, soft labels, iLRG timing). Writes docs/benchmarks/labels.md.

    .venv/bin/python -m benchmarks.labels [--quick] [--only SECTION,...] [--out docs/benchmarks/labels.md]
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks import harness as h
from benchmarks.labels_trained import trained_models
from fedsim.attacks.gradients import batch_gradient, weights_to_fake_gradient
from fedsim.attacks.labels import restore_labels
from fedsim.core.data import load_dataset, load_victims
from fedsim.core.metrics.labels import label_metrics
from fedsim.core.models.zoo import build_model

HARD = ["idlg", "gi", "gi-ext", "rlg", "llg", "llg+", "geng", "geng-bias", "ilrg", "ilrg-prior", "ilrg-refine"]
PUBLISHED = {  # iLRG paper (Ma et al., ICLR 2023) Table 1 (batch 24), via shared/design/references.md
    "fcn3": "iLRG 1.000 / 0.994; iDLG 0.514, GI 1.000, RLG 0.932 (LeAcc) (iLRG paper, Table 1)",
    "lenet5-relu": "iLRG 1.000 / 1.000 (iLRG paper, Table 1)",
    "lenet5-swish": "iLRG 1.000 / 1.000; iDLG 0.150, GI 0.213 (LeAcc) (iLRG paper, Table 1)",
}


class Source:
    """Batches of (model-space inputs, labels) from a dataset or the 20 foolbox victims."""

    def __init__(self, name: str):
        self.name = name
        if name == "mnist":
            ds = load_dataset("mnist_subset")
            self.x, self.y, self.c, self.shape = ds.normalize(ds.train_x), ds.train_y, 10, (1, 28, 28)
        else:  # cifar100 victims: 20 real images, resampled with noise; labels drawn over 100 classes
            imgs, _, c, mean, std = load_victims("cifar100")
            self.imgs, self.c, self.shape = imgs, c, (3, 32, 32)
            self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def batch(self, k: int, gen: torch.Generator, labels: torch.Tensor | None = None):
        if self.name == "mnist":
            if labels is None:
                idx = torch.randint(0, len(self.x), (k,), generator=gen)
            else:
                idx = torch.stack([torch.nonzero(self.y == c).flatten()[
                    torch.randint(0, int((self.y == c).sum()), (1,), generator=gen)][0] for c in labels])
            return self.x[idx], self.y[idx]
        idx = torch.randint(0, len(self.imgs), (k,), generator=gen)
        x = (self.imgs[idx] + 0.05 * torch.randn(self.imgs[idx].shape, generator=gen)).clamp(0, 1)
        y = labels if labels is not None else torch.randint(0, self.c, (k,), generator=gen)
        return (x - self.mean) / self.std, y


def make_model(kind: str, src: Source, seed: int) -> nn.Module:
    if kind == "fcn3":
        return build_model("fcn3", src.shape, src.c, seed=seed, hidden=(300, 300))
    if kind.startswith("lenet5"):
        return build_model("lenet5", src.shape, src.c, seed=seed, activation=kind.split("-")[1])
    if kind == "convnet-bn":
        return build_model("convnet", src.shape, src.c, seed=seed, batchnorm=True)
    if kind == "resnet18":
        return build_model("resnet18", src.shape, src.c, seed=seed)
    raise ValueError(kind)


def run_methods(model, grads, k, y, c, methods, shape, **opts):
    out = {}
    for m in methods:
        if m == "rlg" and k >= c:
            continue  # RLG needs K < C (rank argument)
        try:
            res = restore_labels(m, model=model, gradients=grads, num_samples=k, input_shape=shape, **opts)
        except ValueError as exc:
            out[m] = {"error": str(exc)}
            continue
        met = label_metrics(y, res, c)
        met["seconds"] = res.seconds
        met["presence_only"] = res.presence_only
        out[m] = met
    return out


def average(rows):
    keys = ["label_leacc", "label_lnacc", "label_instacc", "seconds"]
    agg = {}
    for r in rows:
        for m, met in r.items():
            if "error" in met:
                continue
            agg.setdefault(m, {k: [] for k in keys + ["presence_only"]})
            for k in keys + ["presence_only"]:
                agg[m][k].append(float(met[k]))
    return {m: {k: sum(v) / len(v) for k, v in d.items()} for m, d in agg.items()}


def fmt_table(title, results, methods, note=""):
    lines = [f"### {title}", ""]
    if note:
        lines += [note, ""]
    lines += ["| method | LeAcc | LnAcc | InstAcc | ms |", "|---|---|---|---|---|"]
    for m in methods:
        if m not in results:
            lines.append(f"| {m} | - | - | - | - |")
            continue
        r = results[m]
        star = "*" if r["presence_only"] > 0 else ""
        lines.append(f"| {m}{star} | {r['label_leacc']:.3f} | {r['label_lnacc']:.3f} | {r['label_instacc']:.3f} | "
                     f"{1000 * r['seconds']:.1f} |")
    return lines + [""]


def table1(trials, quick):
    out = ["## iLRG Table 1 rows (untrained, batch 24)", "",
           "`*` = presence-only result in at least one trial (counts beyond presence are a uniform fill, so its "
           "LnAcc / InstAcc are not the method's claim). LnAcc = share of all C classes with the exact count.", ""]
    settings = [("fcn3", "mnist"), ("lenet5-relu", "cifar100"), ("lenet5-swish", "cifar100"),
                ("lenet5-leakyrelu", "cifar100"), ("convnet-bn", "cifar100")]
    if not quick:
        settings.append(("resnet18", "cifar100"))
    for kind, data in settings:
        src = Source(data)
        gen = torch.Generator().manual_seed(0)
        rows = []
        n = trials if kind != "resnet18" else max(2, trials // 3)
        for t in range(n):
            model = make_model(kind, src, t)
            x, y = src.batch(24, gen)
            g = batch_gradient(model, x, y)
            rows.append(run_methods(model, g, 24, y, src.c, HARD, src.shape))
        note = f"{kind} on {data} ({src.c} classes), {n} random batches; published: {PUBLISHED.get(kind, 'n/a')}"
        if data == "cifar100":
            note += ". Inputs: the 20 foolbox CIFAR-100 test images resampled with N(0, 0.05) pixel noise, labels " \
                    "drawn uniformly over 100 classes (independent of the image; fine for untrained models)."
        if kind == "convnet-bn":
            note += " BatchNorm in train mode (batch statistics)."
        out += fmt_table(f"{kind} / {data}", average(rows), HARD, note)
        print(kind, "done", flush=True)
    return out


def batch_sweep(trials, quick):
    out = ["## Batch size sweep (untrained): LnAcc / InstAcc", ""]
    sizes = [24, 128, 512, 1024] if not quick else [24, 128, 512]
    methods = ["gi-ext", "llg+", "geng", "geng-bias", "ilrg", "ilrg-prior", "ilrg-refine"]
    for kind, data in [("fcn3", "mnist"), ("lenet5-relu", "cifar100")]:
        src = Source(data)
        lines = [f"### {kind} / {data}", "", "| K | " + " | ".join(methods) + " |",
                 "|---|" + "---|" * len(methods)]
        for k in sizes:
            gen = torch.Generator().manual_seed(k)
            rows = []
            for t in range(trials):
                model = make_model(kind, src, t)
                x, y = src.batch(k, gen)
                rows.append(run_methods(model, batch_gradient(model, x, y), k, y, src.c, methods, src.shape))
            avg = average(rows)
            lines.append(f"| {k} | " + " | ".join(
                f"{avg[m]['label_lnacc']:.3f} / {avg[m]['label_instacc']:.3f}" if m in avg else "-" for m in methods)
                + " |")
        out += lines + [""]
        print("sweep", kind, flush=True)
    return out


def fedavg(trials):
    out = ["## FedAvg fake gradients (FCN-3 / MNIST, untrained start, local batch 24, lr 0.05, plain SGD)", "",
           "K passed = local_steps x batch_size (sample visits the fake gradient averages over). "
           "Cells: LnAcc / InstAcc.", ""]
    methods = ["gi-ext", "llg+", "geng", "geng-bias", "ilrg", "ilrg-refine"]
    src = Source("mnist")
    out += ["| local steps | K | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for steps in (1, 2, 4, 8):
        gen = torch.Generator().manual_seed(steps)
        rows = []
        for t in range(trials):
            model = make_model("fcn3", src, t)
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            ys = []
            for _ in range(steps):
                x, y = src.batch(24, gen)
                ys.append(y)
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            after = {n: p.detach().clone() for n, p in model.named_parameters()}
            fake = weights_to_fake_gradient(before, after, 0.05, steps)
            server = make_model("fcn3", src, t)
            rows.append(run_methods(server, fake, 24 * steps, torch.cat(ys), src.c, methods, src.shape))
        avg = average(rows)
        out.append(f"| {steps} | {24 * steps} | " + " | ".join(
            f"{avg[m]['label_lnacc']:.3f} / {avg[m]['label_instacc']:.3f}" for m in methods) + " |")
    print("fedavg", flush=True)
    return out + [""]


def repetition(trials):
    out = ["## Geng et al. Table 3 setting: batch 16, r extra repeats of one label (instance accuracy, %)", "",
           "Ours: LeNet-5 (ReLU) / CIFAR-100 victims, 100 classes (Geng: ImageNet, 1000 classes). Published (Geng et "
           "al., Table 3): GradInversion 99.60 -> 49.39 as r goes 0 -> 8; Geng 97.4-99.6 throughout.", ""]
    methods = ["gi", "geng", "geng-bias", "ilrg", "ilrg-refine"]
    src = Source("cifar100")
    out += ["| r | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for r in range(9):
        gen = torch.Generator().manual_seed(100 + r)
        rows = []
        for t in range(trials):
            classes = torch.randperm(100, generator=gen)[:16 - r]
            labels = torch.cat([classes, classes[:1].repeat(r)])
            model = make_model("lenet5-relu", src, t)
            x, y = src.batch(16, gen, labels)
            rows.append(run_methods(model, batch_gradient(model, x, y), 16, y, 100, methods, src.shape))
        avg = average(rows)
        out.append(f"| {r} | " + " | ".join(f"{100 * avg[m]['label_instacc']:.1f}" for m in methods) + " |")
    print("repetition", flush=True)
    return out + [""]


def soft(trials):
    src = Source("mnist")
    out = ["## Soft labels (Wang, Liang, He): single input, FCN-3 / MNIST, no-bias search path (`use_bias=False`)",
           "", "Label recovery = argmax right and |eps_hat - eps| < 0.01 (smoothing) or |lambda_hat - lambda| < 0.01 "
           "and both classes right (mixup). Published (Wang, Liang, He, ICLR 2024): > 95 %.", "",
           "| setting | label recovery | mean abs error of eps / lambda | feature cos-sim |", "|---|---|---|---|"]
    gen = torch.Generator().manual_seed(0)
    for kind in ("smoothing", "mixup"):
        ok, errs, cos = 0, [], []
        for t in range(trials):
            model = make_model("fcn3", src, t)
            x, y = src.batch(1, gen)
            a = float(torch.rand(1, generator=gen)) * 0.3 + (0.05 if kind == "smoothing" else 0.55)
            target = torch.zeros(1, 10)
            if kind == "smoothing":
                target += a / 10
                target[0, y[0]] += 1 - a
            else:
                other = (int(y[0]) + 1 + int(torch.randint(0, 9, (1,), generator=gen))) % 10
                target[0, y[0]], target[0, other] = a, 1 - a
            g = torch.autograd.grad(nn.functional.cross_entropy(model(x), target), list(model.parameters()))
            res = restore_labels("soft", model=model, gradients=g, num_samples=1, kind=kind, use_bias=False)
            feat = model.features(x).detach()[0].double()
            cos.append(float(nn.functional.cosine_similarity(res.embeddings[0].double(), feat, dim=0)))
            if kind == "smoothing":
                err = abs(res.extras["smoothing"] - a)
                ok += int(res.labels[0] == y[0] and err < 0.01)
            else:
                err = abs(res.extras["mixup"]["lambda"] - a)
                ok += int(set(res.extras["mixup"]["classes"]) == {int(y[0]), other} and err < 0.01)
            errs.append(err)
        out.append(f"| {kind}, {trials} inputs | {100 * ok / trials:.1f} % | {sum(errs) / len(errs):.2e} | "
                   f"{sum(cos) / len(cos):.4f} |")
    # batch extension
    for k in (8, 24, 128):
        rows = []
        for t in range(trials):
            model = make_model("fcn3", src, t)
            x, y = src.batch(k, gen)
            target = torch.full((k, 10), 0.1 / 10)
            target[torch.arange(k), y] += 0.9
            g = torch.autograd.grad(nn.functional.cross_entropy(model(x), target), list(model.parameters()))
            for known in (True, False):
                res = restore_labels("soft", model=model, gradients=g, num_samples=k,
                                     smoothing=0.1 if known else None)
                rows.append((known, label_metrics(y, res, 10), res.extras["smoothing"]))
        for known in (True, False):
            sel = [r for r in rows if r[0] == known]
            ln = sum(r[1]["label_lnacc"] for r in sel) / len(sel)
            ia = sum(r[1]["label_instacc"] for r in sel) / len(sel)
            ep = sum(r[2] for r in sel) / len(sel)
            out.append(f"| batch extension, K={k}, eps=0.1 {'given' if known else 'estimated'} | counts LnAcc "
                       f"{ln:.3f}, InstAcc {ia:.3f} | eps_hat mean {ep:.3f} | - |")
    print("soft", flush=True)
    return out + [""]


def timing(quick):
    out = ["## Timing: iLRG restoration vs one forward+backward of the batch (K = 1024, medians)", "",
           "FCN 784-300-300-C on random 28x28 inputs; restoration time excludes computing the gradient.", "",
           "| C | fwd+bwd ms | ilrg ms | ratio | ilrg-refine ms | ratio | geng-bias ms |", "|---|---|---|---|---|---|---|"]
    reps = 5 if quick else 9
    for c in (10, 100, 1000):
        model = build_model("fcn3", (1, 28, 28), c, seed=0, hidden=(300, 300))
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1024, 1, 28, 28, generator=gen)
        y = torch.randint(0, c, (1024,), generator=gen)
        g = batch_gradient(model, x, y)
        tf, ti, tr, tg = [], [], [], []
        for _ in range(reps):  # side by side, interleaved
            t0 = time.perf_counter()
            batch_gradient(model, x, y)
            tf.append(time.perf_counter() - t0)
            ti.append(restore_labels("ilrg", model=model, gradients=g, num_samples=1024).seconds)
            tr.append(restore_labels("ilrg-refine", model=model, gradients=g, num_samples=1024).seconds)
            tg.append(restore_labels("geng-bias", model=model, gradients=g, num_samples=1024).seconds)
        f, i, r, gg = (statistics.median(v) * 1000 for v in (tf, ti, tr, tg))
        out.append(f"| {c} | {f:.1f} | {i:.2f} | {100 * i / f:.1f} % | {r:.2f} | {100 * r / f:.1f} % | {gg:.1f} |")
    print("timing", flush=True)
    return out + [""]


def splice(old: str, sections: dict[str, list[str]]) -> str:
    """Replace the ``<!-- section: NAME -->`` blocks of ``old`` that were re-run; keep the others and the notes."""
    parts = old.split("<!-- section: ")
    blocks = {p.split(" -->", 1)[0]: p.split(" -->\n", 1)[1] for p in parts[1:]}
    for name, lines in sections.items():
        blocks[name] = "\n".join(lines) + "\n"
    return parts[0] + "".join(f"<!-- section: {n} -->\n{blocks[n]}" for n in SECTIONS if n in blocks)


SECTIONS = {"table1": lambda t, q: table1(t, q), "sweep": lambda t, q: batch_sweep(t, q),
            "fedavg": lambda t, q: fedavg(t), "repetition": lambda t, q: repetition(t),
            "trained-mnist-convnet": lambda t, q: trained_models("mnist", "convnet", max(2, t // 3), run_methods,
                                                                  average, intro=True),
            "trained-mnist-fcn3": lambda t, q: trained_models("mnist", "fcn3", max(2, t // 3), run_methods, average),
            "trained-photos-convnet": lambda t, q: trained_models("photos", "convnet", max(2, t // 3), run_methods,
                                                                  average),
            "soft": lambda t, q: soft(t if q else 20), "timing": lambda t, q: timing(q)}


def main() -> None:
    ap = h.parser(__doc__, quick=False, threads=1, out=h.PAGES / "labels.md")
    ap.add_argument("--only", default="", help=f"comma-separated sections to re-run ({', '.join(SECTIONS)}); "
                    "the others are kept from --out")
    args = h.parse(ap)  # one thread: small models, more intra-op threads only spin on a shared machine
    trials = 3 if args.quick else 10
    names = [n for n in args.only.split(",") if n] or list(SECTIONS)
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        ap.error(f"--only: unknown sections {unknown}")
    sections = {}
    for name in names:
        start = time.time()
        sections[name] = SECTIONS[name](trials, args.quick) + [f"(Section time: {time.time() - start:.0f} s.)", ""]
    out = Path(args.out)
    old = out.read_text() if out.exists() else ""  # read late: parallel --only runs splice in turn
    old, notes = (old.split("\n## Notes", 1) + [""])[:2] if "\n## Notes" in old else (old, "")
    notes = "\n## Notes" + notes if notes else ""
    cmd = "python -m benchmarks.labels" + (" --quick" if args.quick else "")
    head = "\n".join(["# Label restoration benchmark", "",
                      f"Command: `{cmd}` (repo root, `.venv/bin/python`; `--only SECTION` re-runs one section in "
                      f"place). Machine: {h.machine()} (shared), no GPU. Trials per cell: {trials} random batches "
                      f"(untrained models re-seeded per trial; the trained-model sections use {max(2, trials // 3)}).",
                      "", ""])
    body = splice(old if args.only and "<!-- section: " in old else "", sections).split("<!-- section: ", 1)
    text = head + ("<!-- section: " + body[1] if len(body) > 1 else "") + notes
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
