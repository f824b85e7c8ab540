"""A real Flower simulation (Ray backend) through `fedsim run configs/smoke.toml`: rising accuracy, one capture
per client and round, every capture attacked (label and inversion rows) and scored, ground truth in the audit
folder, a report, and no Flower process left behind."""

from pathlib import Path

import pytest
import torch

from fedsim.core.captures import iter_captures, load_update
from fedsim.core.results import read_jsonl
from tests.processes import fedsim_run, processes_under

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_federation(tmp_path):
    out = tmp_path / "smoke"
    fedsim_run(ROOT / "configs" / "smoke.toml", out)
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "utility"]
    acc = [r["test_accuracy"] for r in sorted(rows, key=lambda r: r["round"])]
    assert len(acc) == 3 and acc[0] < acc[1] < acc[2]
    captures = list(iter_captures(out))
    assert len(captures) == 2 * 3
    rounds_clients = {(load_update(p).server_round, load_update(p).client_id) for p in captures}
    assert rounds_clients == {(r, c) for r in (1, 2) for c in range(3)}
    assert len(list((out / "audit").rglob("*.safetensors"))) == 6
    assert (out / "config.toml").exists() and (out / "report.html").exists()
    attacked = list(read_jsonl(out / "metrics.jsonl"))
    for r, c in rounds_clients:
        mine = [row for row in attacked if row.get("round") == r and row.get("client") == c]
        labels = [row for row in mine if row["kind"] == "label" and row["ok"]]
        inversions = [row for row in mine if row["kind"] == "inversion" and row["ok"]]
        assert {row["method"] for row in labels} == {"ilrg", "ilrg-refine", "gi"}, mine
        assert all(sum(row["true_counts"]) == 64 and sum(row["restored_counts"]) == 64 for row in labels)
        by = {row["method"]: row for row in labels}
        # measured 0.77-0.91 (ilrg-refine) vs 0.67-0.81 (gi, presence only) on this preset: a real restoration
        assert by["ilrg-refine"]["label_instacc"] >= 0.7, by["ilrg-refine"]
        assert by["ilrg"]["label_leacc"] >= 0.8, by["ilrg"]
        inv = inversions[0] if len(inversions) == 1 else None
        assert inv is not None and inv["num_images"] == 64 and inv["label_source"] == "ilrg", mine
        assert (out / inv["image"]).exists()
        # better than the attack's own random start (N(0,1) in model space, clamped): measured +1.4 to +1.8 dB.
        # Not better than a constant dataset-mean image (10.5 dB; the attack: 10.1-10.5) on this preset: 64
        # images in one FedAvg update, 60 steps; docs/benchmarks has the regimes where it is.
        assert inv["psnr"] > _random_start_psnr(out, r, c) + 1.0, (inv["psnr"], _random_start_psnr(out, r, c))
    instacc = {m: sum(r["label_instacc"] for r in attacked if r.get("method") == m and r["kind"] == "label")
               for m in ("ilrg-refine", "gi")}
    assert instacc["ilrg-refine"] > instacc["gi"]  # count restoration beats the presence-only baseline
    assert processes_under(tmp_path) == []


def _random_start_psnr(run: Path, rnd: int, client: int) -> float:
    """PSNR, scored as the run scores it, of a random start like the inversion's against that update's truth."""
    from fedsim.core.config import load_config
    from fedsim.core.data import load_dataset
    from fedsim.evaluation.truth import truth_for
    from fedsim.core.metrics.images import image_metrics

    ds = load_dataset(load_config(run / "config.toml").data.dataset)
    update = next(load_update(p) for p in iter_captures(run)
                  if load_update(p).server_round == rnd and load_update(p).client_id == client)
    x, _ = truth_for(run, update).unique_samples()
    start = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    return image_metrics(start, x, ds.mean, ds.std)["psnr"]
