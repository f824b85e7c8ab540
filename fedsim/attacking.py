"""Attack and score one capture file: used by the live server's worker pool and by ``fedsim attack``.

Attack (``attacks.pipeline``, no ground truth) then score (``fedsim.scoring``, reads the audit channel), and
write the image grid. Returns ``metrics.jsonl`` rows; the caller appends them (one writer per run).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fedsim.config import ExperimentConfig, from_flat
from fedsim.experiment import dataset, make_model

log = logging.getLogger("fedsim.attacks")


def plan_from_config(cfg: ExperimentConfig):
    from attacks.pipeline import AttackPlan

    a = cfg.attack
    methods = tuple(m.strip() for m in a.label_methods.split(",") if m.strip() and m.strip() != "none")
    inversion = None if a.inversion.strip().lower() in ("", "none") else a.inversion.strip()
    return AttackPlan(label_methods=methods, inversion=inversion, inversion_steps=a.inversion_steps,
                      max_inversion_images=a.max_inversion_images, seed=cfg.run.seed)


def data_spec(cfg: ExperimentConfig):
    from attacks.pipeline import DataSpec

    ds = dataset(cfg)
    return DataSpec(tuple(ds.input_shape), ds.num_classes, tuple(ds.mean), tuple(ds.std))


def generative_options(cfg: ExperimentConfig, run_dir: str | Path) -> dict[str, Any]:
    """ggl/gias options from [attack]: the prior file (default <run>/priors/<dataset>_vae.safetensors) and,
    with attack.prior_autotrain, the public aux images to train it from when it is missing."""
    from attacks.generative import aux_split, default_prior_path

    path = Path(cfg.attack.prior_path) if cfg.attack.prior_path else default_prior_path(run_dir, cfg.data.dataset)
    options: dict[str, Any] = {"prior_path": str(path)}
    if cfg.attack.prior_autotrain and not path.exists():
        options["aux_images"] = aux_split(dataset(cfg))[0]
    return options


def attack_and_score(capture: str | Path, flat_config: dict[str, Any], run_dir: str | Path) -> list[dict]:
    """All rows for one captured update. Never raises for an attack failure (rows say ``ok: false``)."""
    import torch

    from attacks.pipeline import attack_update
    from fedsim.audit import audit_path, read_ground_truth
    from fedsim.captures import load_update
    from fedsim.metrics.grids import save_comparison
    from fedsim.scoring import score

    torch.set_num_threads(1)
    cfg = from_flat(flat_config)
    run_dir = Path(run_dir)
    update = load_update(capture)
    from fedsim.faults_spec import parse_faults

    if parse_faults(cfg.faults).crashes_attack(update.client_id, update.server_round):  # [faults] attack_crash
        raise RuntimeError(f"injected attack crash: round {update.server_round} client {update.client_id}")
    spec = data_spec(cfg)
    plan = plan_from_config(cfg)
    if plan.inversion in ("ggl", "gias"):
        import dataclasses

        plan = dataclasses.replace(plan, inversion_options={**plan.inversion_options,
                                                            **generative_options(cfg, run_dir)})
    results = attack_update(update, lambda: make_model(cfg), plan, spec)
    truth = None
    if audit_path(run_dir, update.server_round, update.client_id).exists():
        truth = read_ground_truth(run_dir, update.server_round, update.client_id)
    rows = []
    for res in results:
        row: dict[str, Any] = {
            "kind": res.attack, "round": update.server_round, "client": update.client_id, "method": res.method,
            "ok": res.ok, "seconds": round(res.seconds, 4), "algorithm": update.algorithm,
            "local_steps": update.local_steps, "batch_size": update.batch_size,
            "num_examples": update.num_examples,
            "defenses": {k: v for k, v in dict(update.defenses).items()},  # what the server knows; never assumed off
        }
        if not res.ok:
            row["error"] = res.error
            rows.append(row)
            continue
        try:
            scores = score(res, truth, spec.num_classes, spec.mean, spec.std)
        except Exception as exc:  # noqa: BLE001 - a scoring problem must not lose the attack row
            scores = {"score_error": f"{type(exc).__name__}: {exc}"}
        if res.attack == "label":
            row.update(num_samples=int(res.options.get("batch_size", 0)), restored_counts=res.metrics["counts"],
                       presence_only=res.metrics.get("presence_only", False))
            row.update(scores)
        else:
            row.update(label_source=res.options.get("label_source"), num_images=int(len(res.reconstruction)),
                       steps=res.options.get("steps"))
            row.update({k: scores[k] for k in ("psnr", "ssim", "ssim_perm_agnostic", "psnr_per_image",
                                               "ssim_per_image", "label_matches", "score_error") if k in scores})
            if truth is not None and "permutation" in scores:
                x_true, _ = truth.unique_samples()
                rel = Path("images") / f"r{update.server_round:04d}_c{update.client_id:04d}_{res.method}.png"
                save_comparison(x_true, res.reconstruction, run_dir / rel, mean=spec.mean, std=spec.std,
                                permutation=scores["permutation"], psnr_per_image=scores.get("psnr_per_image"),
                                title=f"round {update.server_round}, client {update.client_id}: {res.method} "
                                      f"(labels: {res.options.get('label_source')})")
                row["image"] = str(rel)
        rows.append(row)
    return rows
