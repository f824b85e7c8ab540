"""Build a small run folder in-process (no Flower): what a FedSGD/FedAvg round leaves behind."""

from __future__ import annotations

from pathlib import Path

from fedsim.core.audit import write_ground_truth
from fedsim.core.captures import capture_path, save_update
from fedsim.core.config import ExperimentConfig, from_flat, to_toml
from fedsim.core.experiment import client_data, local_seed, make_model
from fedsim.core.training import train_locally
from fedsim.core.types import ClientUpdate

TINY = {
    "run.name": "tiny", "run.num_clients": 3, "run.num_rounds": 1, "data.dataset": "digits",
    "model.name": "fcn3", "model.width": 32, "train.algorithm": "fedsgd", "train.batch_size": 4,
    "train.lr": 0.1, "attack.enabled": True, "attack.label_methods": "ilrg,gi", "attack.inversion": "none",
    "attack.workers": 0,
}


def make_run(tmp: Path, rounds: int = 1, **overrides) -> tuple[ExperimentConfig, Path]:
    flat = dict(TINY)
    flat.update(overrides)
    flat["run.out_dir"] = str(tmp)
    cfg = from_flat(flat)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.toml").write_text(to_toml(cfg))
    model = make_model(cfg)
    for r in range(1, rounds + 1):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        for c in range(cfg.run.num_clients):
            local = make_model(cfg)
            local.load_state_dict(model.state_dict())
            x, y = client_data(cfg, c, cfg.run.num_clients)
            res = train_locally(local, x, y, algorithm=cfg.train.algorithm, lr=cfg.train.lr,
                                epochs=cfg.train.local_epochs, batch_size=cfg.train.batch_size,
                                seed=local_seed(cfg.run.seed, r, c), server_round=r, client_id=c)
            write_ground_truth(tmp, res.ground_truth)
            used = len(res.ground_truth.all_labels) if cfg.train.algorithm == "fedsgd" else len(y)
            update = ClientUpdate(run_id="t", server_round=r, client_id=c, algorithm=cfg.train.algorithm,
                                  weights_before=before,
                                  weights_after={n: p.detach().clone() for n, p in local.named_parameters()},
                                  lr=cfg.train.lr, local_epochs=cfg.train.local_epochs, local_steps=res.steps,
                                  batch_size=cfg.train.batch_size, num_examples=used)
            save_update(update, capture_path(tmp, r, c))
    return cfg, tmp
