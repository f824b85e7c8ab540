"""fedsim.lab.report: a self-contained report.html from a (synthetic) run folder, robust to missing/partial files.

``make_synthetic_run`` writes a realistic run folder (config.toml, metrics.jsonl with utility / label /
inversion / skipped / failed rows, rejections.jsonl, captures/, images/ with real PNG grids of rendered
digits); ``python tests/test_report.py OUT_DIR [--rich]`` writes one for a look in a browser.
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fedsim.lab.report import write_report  # noqa: E402
from fedsim.core.rows import (AttackErrorRow, InversionRow, LabelRow, LostRoundRow, PrivacyRow,  # noqa: E402
                         RejectionRow, SkippedRow, UtilityRow)
from fedsim.core.runfolder import RunFolder  # noqa: E402

CONFIG = """[run]
name = "{name}"
num_rounds = {rounds}
num_clients = {clients}
seed = 1

[data]
dataset = "mnist_subset"
partition = "dirichlet"
alpha = 0.5

[model]
name = "lenet5"
activation = "sigmoid"
width = 12

[train]
algorithm = "{algorithm}"
lr = 0.1
local_epochs = 1
batch_size = 8

[capture]
enabled = true
rounds = "all"
clients = "all"

[attack]
enabled = true
label_methods = "ilrg,rlg"
inversion = "ig"
inversion_steps = 300
"""

_GLYPHS: dict[int, np.ndarray] = {}


def _glyph(d: int) -> np.ndarray:
    """A 28x28 grey-scale image of the digit ``d`` in [0, 1] (white on black, like MNIST)."""
    if d not in _GLYPHS:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(0.28, 0.28), dpi=100, facecolor="black")
        fig.text(0.5, 0.45, str(d), color="white", ha="center", va="center", fontsize=17, weight="bold")
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba(), dtype=np.float64)[..., :3].mean(-1) / 255.0
        plt.close(fig)
        _GLYPHS[d] = rgba[:28, :28]
    return _GLYPHS[d]


def _grid_png(path: Path, labels: list[int], noise: float, rng: np.random.Generator) -> tuple[float, float]:
    """Ground-truth row above a degraded 'reconstruction' row; returns (psnr, ssim-ish) of the pair."""
    import matplotlib.pyplot as plt

    gt = np.stack([_glyph(d) for d in labels])
    blur = (gt + np.roll(gt, 1, 1) + np.roll(gt, -1, 1) + np.roll(gt, 1, 2) + np.roll(gt, -1, 2)) / 5
    rec = np.clip(blur + rng.normal(0, noise, gt.shape), 0, 1)
    mse = float(((rec - gt) ** 2).mean())
    psnr = 10 * math.log10(1 / max(mse, 1e-12))
    ssim = float(np.clip(1.15 - 2.2 * math.sqrt(mse), 0.03, 0.99))
    k = len(labels)
    canvas = np.ones((2 * 28 + 6, k * 30 + 2))
    for i in range(k):
        canvas[2:30, 2 + 30 * i:30 + 30 * i] = gt[i]
        canvas[32:60, 2 + 30 * i:30 + 30 * i] = rec[i]
    canvas = np.kron(canvas, np.ones((3, 3)))
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, canvas, cmap="gray", vmin=0, vmax=1)
    return psnr, ssim


def make_synthetic_run(run: Path, rich: bool = False, seed: int = 0) -> dict:
    """Write a synthetic run folder; returns a few of the numbers written (for assertions)."""
    rng = np.random.default_rng(seed)
    rounds, clients = (4, 6) if rich else (2, 3)
    algorithm = "fedavg" if rich else "fedsgd"
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.toml").write_text(CONFIG.format(name="synthetic-fedavg-sweep" if rich else "synthetic",
                                                   rounds=rounds, clients=clients, algorithm=algorithm))
    rows: list[dict] = []
    acc, loss = 0.1, 2.30
    for r in range(rounds + 1):
        rows.append({"kind": "utility", "round": r, "test_accuracy": round(acc, 4), "test_loss": round(loss, 4),
                     "time": 1_700_000_000.0 + 12 * r})
        acc, loss = acc + (0.95 - acc) * 0.45, loss * 0.62
    batch_sizes = [1, 2, 4, 8, 16, 4] if rich else [4, 4, 4]
    steps = [1, 1, 2, 4, 8, 1] if rich else [1, 1, 1]
    expected = {}
    for r in range(1, rounds + 1):
        for c in range(clients):
            cap = run / "captures" / f"round_{r:04d}" / f"client_{c:04d}.safetensors"
            cap.parent.mkdir(parents=True, exist_ok=True)
            cap.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
            if c == clients - 1 and r == rounds:
                continue  # this reply was rejected below
            b, t = batch_sizes[c], steps[c]
            labels = sorted(int(x) for x in rng.choice([0, 1, 3, 4, 7, 9], size=b))
            true = np.bincount(labels, minlength=10).tolist()
            common = {"round": r, "client": c, "algorithm": algorithm, "local_steps": t, "batch_size": b}
            for method, err_rate in (("ilrg", 0.08 * math.log2(b * t + 1)), ("rlg", 0.2 * math.log2(b * t + 1))):
                if method == "rlg" and r == 2 and c == 1:
                    rows.append({"kind": "label", "method": method, "ok": False, **common,
                                 "error": "RuntimeError: SVD did not converge (rank-deficient gradient)"})
                    continue
                restored = list(true)
                for _ in range(int(round(err_rate * rng.random() * b))):  # move some labels elsewhere
                    src = int(rng.choice(np.flatnonzero(restored)))
                    restored[src] -= 1
                    restored[int(rng.integers(10))] += 1
                t_, p_ = np.array(true), np.array(restored)
                row = {"kind": "label", "method": method, "ok": True, **common,
                       "label_leacc": float(((t_ > 0) == (p_ > 0)).mean()),
                       "label_lnacc": float((t_ == p_).mean()),
                       "label_instacc": round(1 - float(np.abs(p_ - t_).sum()) / (2 * b), 4),
                       "num_samples": b, "true_counts": true, "restored_counts": restored,
                       "seconds": round(float(rng.uniform(0.05, 0.4)), 3)}
                rows.append(row)
                expected.setdefault("instacc", []).append(row["label_instacc"])
            if b > 8:
                rows.append({"kind": "skipped", "method": "ig", **common,
                             "reason": f"batch of {b} exceeds inversion max_batch 8"})
                continue
            if r == 1 and c == 2:
                rows.append({"kind": "inversion", "method": "ig", "ok": False, **common,
                             "error": "TimeoutError: attack exceeded 600 s"})
                continue
            img = f"images/r{r:04d}_c{c:04d}_ig.png"
            noise = 0.05 + 0.05 * math.log2(b * t) + 0.05 * r + 0.03 * rng.random()
            psnr, ssim = _grid_png(run / img, labels, noise, rng)
            rows.append({"kind": "inversion", "method": "ig", "ok": True, **common, "psnr": round(psnr, 3),
                         "ssim": round(ssim, 4), "label_source": "ilrg", "num_images": b, "image": img,
                         "seconds": round(float(rng.uniform(20, 60)), 2)})
            expected.setdefault("psnr", []).append(round(psnr, 3))
    if not rich:  # a replay (fedsim attack) of round 1 client 0's labels supersedes the first rows
        first = next(r for r in rows if r["kind"] == "label" and r["round"] == 1 and r["client"] == 0)
        rows.append({**first, "label_instacc": 0.125, "replay": True})
        expected["instacc"] = [a for a in expected["instacc"] if a != first["label_instacc"]] + [0.125]
    rows.append({"kind": "future_kind", "round": 1, "whatever": 1})
    with (run / "metrics.jsonl").open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
        fh.write('{"kind": "label", "round": 9, "cli')  # a run still writing: cut-off last line
    (run / "rejections.jsonl").write_text(json.dumps(
        {"round": rounds, "node": 918273645, "client": clients - 1,
         "reason": "update shape mismatch for conv1.weight: expected [12, 1, 5, 5], got [12, 1, 3, 3]"}) + "\n")
    return expected


def _assert_self_contained(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower()
    assert "@import" not in page and "url(" not in page
    for src in re.findall(r"""src\s*=\s*["']([^"']*)["']""", page):
        assert src.startswith("data:image/png;base64,"), src[:60]
        base64.b64decode(src.split(",", 1)[1], validate=True)
    for href in re.findall(r"""href\s*=\s*["']([^"']*)["']""", page):  # anchors; a full grid beside the page
        assert href.startswith("#") or re.fullmatch(r"images/[\w.+-]+_full\.png", href), href


def test_report_from_synthetic_run(tmp_path):
    run = tmp_path / "run"
    expected = make_synthetic_run(run)
    out = write_report(run)
    assert out == run / "report.html" and out.is_file()
    page = out.read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert page.count("data:image/png;base64,") >= 4  # diagram, utility, leakage, grids
    assert "synthetic" in page and "mnist_subset" in page and "lenet5" in page
    for psnr in expected["psnr"]:
        assert f"PSNR {psnr:.1f} dB" in page
    for acc in expected["instacc"]:
        assert f"{100 * acc:.0f}%" in page
    assert 'class="chip hit"' in page  # restored counts shown and matches highlighted
    # failures, skips (none in the small run), rejections, tolerated junk
    assert "SVD did not converge" in page and "TimeoutError: attack exceeded 600 s" in page
    assert "update shape mismatch for conv1.weight" in page and "918273645" in page
    assert "1 unreadable line in metrics.jsonl" in page and "future_kind" in page
    assert "Nothing was found" not in page
    assert "1 earlier attack row superseded" in page


def test_report_rich_run_plots_batch_and_steps(tmp_path):
    run = tmp_path / "rich"
    make_synthetic_run(run, rich=True, seed=3)
    page = write_report(run).read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "leakage vs batch size" in page and "leakage vs local steps" in page
    assert "exceeds inversion max_batch 8" in page  # skipped rows are listed


def test_report_empty_and_hostile_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    page = write_report(empty).read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "Nothing was found" in page

    missing = tmp_path / "does_not_exist"
    assert write_report(missing).is_file()

    odd = tmp_path / "odd"
    odd.mkdir()
    (tmp_path / "secret.png").write_bytes(b"\x89PNG\r\n\x1a\nSECRET")
    (odd / "config.toml").write_text("[run\nname = ")  # broken TOML
    (odd / "not_a_png.png").write_text("<svg onload=alert(1)>")
    rows = [
        {"kind": "utility", "round": 0, "test_accuracy": None, "test_loss": "nan"},
        {"kind": "utility", "round": "x"},
        {"kind": "label", "round": 1, "client": 0, "method": "<b>ilrg</b>", "ok": True, "label_instacc": "bad",
         "true_counts": [1, -2], "restored_counts": "nope"},
        {"kind": "inversion", "round": 1, "client": 0, "method": "ig", "ok": True, "psnr": 12.0,
         "image": "../secret.png"},
        {"kind": "inversion", "round": 1, "client": 1, "method": "ig", "ok": True, "psnr": None,
         "image": "not_a_png.png"},
        {"kind": "inversion", "round": 1, "client": 2, "method": "ig", "ok": True, "psnr": 1.0, "image": 7},
        [1, 2, 3],
        {"no": "kind"},
    ]
    (odd / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    (odd / "rejections.jsonl").write_text('{"reason": "<script>x</script>"}\n')
    page = write_report(odd).read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "SECRET" not in page and base64.b64encode(b"SECRET").decode() not in page
    assert "<b>ilrg</b>" not in page and "&lt;b&gt;ilrg&lt;/b&gt;" in page
    assert "config.toml could not be read" in page
    assert "image not found" in page


def test_report_shows_one_row_of_every_kind(tmp_path):
    """One typed row of each kind, written through RunFolder.append, each found in report.html."""
    folder = RunFolder(tmp_path / "every_kind")
    (folder.root).mkdir()
    folder.config.write_text(CONFIG.format(name="every-kind", rounds=5, clients=2, algorithm="fedsgd"))
    common = {"client": 0, "algorithm": "fedsgd", "batch_size": 4, "local_steps": 1}
    for row in [
        UtilityRow(round=0, test_accuracy=0.1, test_loss=2.3),
        UtilityRow(round=1, test_accuracy=0.4321, test_loss=1.2),
        LabelRow(round=1, method="ilrg", ok=True, num_samples=4, restored_counts=[0, 0, 3, 0, 0, 0, 0, 1, 0, 0],
                 true_counts=[0, 0, 3, 0, 0, 0, 0, 0, 1, 0], label_instacc=0.75, label_lnacc=0.8, **common),
        LabelRow(round=1, method="rlg", ok=False, error="LinAlgError: label-kind-failure-7781", **common),
        InversionRow(round=1, method="ig", ok=True, psnr=23.456, ssim=0.71, num_images=4, **common),
        InversionRow(round=1, method="gias", ok=False, error="RuntimeError: inversion-kind-failure-4402", **common),
        PrivacyRow(round=1, epsilon=3.1416, delta=1e-5, accountant="opacus-rdp", mechanism="dp_sgd"),
        AttackErrorRow(round=2, client=1, error="timed out after 600.0s (attack-error-9931)"),
        SkippedRow(round=2, client=0, reason="attack queue full (skipped-5517)", method="ig"),
        LostRoundRow(round=3, reason="every reply rejected (lost-round-6620)", replies=2, rejected=2),
        RejectionRow(round=3, node=424242, client=1, reason="NaN in conv1.weight (rejection-3307)"),
    ]:
        folder.append(row)
    page = write_report(folder.root).read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "43%" in page  # utility
    assert "75%" in page and 'class="chip hit"' in page  # label restoration, scored
    assert "PSNR 23.5 dB" in page or "23.5 dB" in page  # inversion
    assert "label-kind-failure-7781" in page and "inversion-kind-failure-4402" in page  # ok=false rows
    assert "3.142" in page and "1e-05" in page and "opacus-rdp" in page and "dp_sgd" in page  # privacy
    assert "attack-error-9931" in page  # attack_error
    assert "skipped-5517" in page  # skipped
    assert "lost-round-6620" in page and "1 of 5 rounds lost" in page  # lost round, as a banner
    assert "rejection-3307" in page and "424242" in page  # rejection
    assert "unknown kinds" not in page and "required field" not in page


def test_report_lost_rounds_banner_and_malformed_rows(tmp_path):
    folder = RunFolder(tmp_path / "lost")
    folder.root.mkdir()
    folder.config.write_text(CONFIG.format(name="lost", rounds=5, clients=2, algorithm="fedavg"))
    for r in (2, 4):
        folder.append(LostRoundRow(round=r, reason="no replies"))
    with folder.metrics.open("a") as fh:
        fh.write(json.dumps({"kind": "privacy", "round": 1}) + "\n")  # epsilon missing: malformed
    page = write_report(folder.root).read_text(encoding="utf-8")
    assert "2 of 5 rounds lost" in page and "rounds 2, 4 aggregated nothing" in page
    assert "rows missing a required field skipped: privacy (1)" in page


@pytest.mark.parametrize("defense, shown", [
    ('[defense]\nclip_norm = 0.0\ndp_sgd = true\ndp_sgd_noise = 1.1\nlocal_dp = false\nlocal_dp_clip = 1.0\n',
     "dp_sgd = True, dp_sgd_noise = 1.1"),
    ('[defense.update]\ntopk_ratio = 0.1\nquant_bits = 0\n[defense.local_dp]\nenabled = false\n'
     '[defense.central_dp]\nclipping = "server"\nnoise_multiplier = 0.5\n',
     "update (topk_ratio = 0.1, quant_bits = 0); central_dp (clipping = server, noise_multiplier = 0.5)"),
    ('[defense.dp_sgd]\nenabled = false\n', "none"),
])
def test_report_lists_only_the_defenses_that_are_on(tmp_path, defense, shown):
    run = tmp_path / "defended"
    run.mkdir()
    (run / "config.toml").write_text(CONFIG.format(name="d", rounds=1, clients=1, algorithm="fedsgd") + defense)
    page = write_report(run).read_text(encoding="utf-8")
    assert f'defense</span><span class="v">{shown}</span>' in page
    assert "local_dp_clip" not in page.split("full resolved config")[0]


def test_report_replay_supersedes_attack_error(tmp_path):
    folder = RunFolder(tmp_path / "replayed")
    folder.root.mkdir()
    folder.append(AttackErrorRow(round=1, client=0, error="timed out (superseded-1234)"))
    folder.append(LabelRow(round=1, client=0, method="ilrg", ok=True, replay=True, label_instacc=1.0))
    page = write_report(folder.root).read_text(encoding="utf-8")
    assert "superseded-1234" not in page and "1 earlier attack row superseded" in page


def test_report_timeline_with_attacks_at_several_rounds(tmp_path):
    folder = RunFolder(tmp_path / "timeline")
    folder.root.mkdir()
    folder.config.write_text(CONFIG.format(name="timeline", rounds=9, clients=2, algorithm="fedsgd"))
    for r in range(10):
        folder.append(UtilityRow(round=r, test_accuracy=0.1 + 0.09 * r, test_loss=2.3 - 0.2 * r))
    for r in (1, 5, 9):
        for c in (0, 1):
            folder.append(LabelRow(round=r, client=c, method="ilrg", ok=True, label_instacc=1 - 0.1 * r,
                                   label_lnacc=1 - 0.11 * r, true_counts=[1, 1, 0], restored_counts=[2, 0, 0]))
            folder.append(InversionRow(round=r, client=c, method="ig", ok=True, psnr=30 - 2 * r, ssim=0.5))
    page = write_report(folder.root).read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "accuracy, label restoration and reconstruction PSNR against round" in page  # the figure
    section = page.split('id="timeline"')[1].split("</section>")[0]
    for r, acc in ((1, "10%"), (5, "46%"), (9, "82%")):  # model accuracy after round r - 1
        assert f"Round {r} " in section and acc in section
    assert "12.0 dB" in section  # round 9 mean PSNR
    assert "trained from a model with 10% test accuracy; in round 9, from one with 82%" in section
    assert "recovered 90% of the batch labels (ilrg) in round 1 and 10% (ilrg) in round 9" in section
    assert "went from 28.0 dB (ig) to 12.0 dB (ig)" in section
    assert "Attacks ran in fewer than two rounds" not in section
    assert 'id="leakage"' not in page and 'href="#leakage"' not in page  # nothing but rounds varies: no section


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fedsim_synthetic_run")
    make_synthetic_run(target, rich="--rich" in sys.argv)
    print(write_report(target))
