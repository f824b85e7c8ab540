"""Experiment tracking: export a run folder's typed rows and reconstruction grids to TensorBoard or MLflow.

``[tracking] backend = "tensorboard" | "mlflow"`` (off by default) exports the run when ``fedsim run`` (or a sweep
run) ends; ``fedsim track RUN --backend ...`` exports any finished run. The exporter reads what the run folder
already holds (``metrics.jsonl``, ``images/``), so it never touches the federation and works for replays too.

Scalars, each with the round as its step (one value per round: the mean over the updates attacked that round):

* ``utility/test_accuracy``, ``utility/test_loss`` (``UtilityRow``)
* ``label/<method>/lnacc``, ``label/<method>/leacc`` (``LabelRow``, successful rows with a score)
* ``inversion/<method>/psnr``, ``inversion/<method>/ssim`` (``InversionRow``)
* ``privacy/<mechanism>/epsilon`` (``PrivacyRow``, finite epsilon only)

Replayed attacks (``fedsim attack``) go under ``replay/label/...`` and ``replay/inversion/...``. Reconstruction
grids (``InversionRow.image``): TensorBoard images tagged ``reconstruction/<method>/client_<C>`` at the round;
MLflow artifacts under ``reconstructions/<method>/``.
A ``file:`` URI is MLflow's file store, which MLflow 3 keeps behind ``MLFLOW_ALLOW_FILE_STORE`` (set for the
export); any other URI (``sqlite:///...``, a tracking server) is used as it is, a new experiment's artifacts then
going to ``<run>/mlartifacts``. TensorBoard writes to ``tracking.dir`` (default
``<run>/tensorboard``), MLflow to ``tracking.uri`` (default the local file store ``file:<run>/mlruns``), experiment
``tracking.experiment``, one MLflow run named after ``run.name`` with the config as parameters.

The libraries are the optional ``tracking`` extra (``pip install -e '.[tracking]'``); a missing one is a one-line
``ConfigError`` naming ``tracking.backend``.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from fedsim.core.config import ExperimentConfig, load_config
from fedsim.core.errors import ConfigError, RunFolderError
from fedsim.core.rows import InversionRow, LabelRow, PrivacyRow, UtilityRow
from fedsim.core.runfolder import RunFolder

BACKENDS = ("tensorboard", "mlflow")
_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}


@dataclass(frozen=True)
class Scalar:
    tag: str
    step: int
    value: float


@dataclass(frozen=True)
class Grid:
    tag: str
    step: int
    path: Path


@dataclass(frozen=True)
class Exported:
    """What an export wrote: the backend, where to (a folder or a tracking URI), and how much."""

    backend: str
    target: str
    scalars: int
    images: int
    run_id: str = ""

    def line(self) -> str:
        return f"tracking: {self.scalars} scalars and {self.images} reconstruction grids -> {self.backend} {self.target}"


def _means(values: dict[tuple[str, int], list[float]]) -> list[Scalar]:
    return [Scalar(tag, step, sum(v) / len(v)) for (tag, step), v in sorted(values.items()) if v]


def scalars(folder: RunFolder) -> list[Scalar]:
    """The scalars of a run (tags above), sorted by tag then round."""
    out: list[Scalar] = []
    per: dict[tuple[str, int], list[float]] = defaultdict(list)
    for row in folder.rows():
        if isinstance(row, UtilityRow):
            out += [Scalar("utility/test_accuracy", row.round, float(row.test_accuracy)),
                    Scalar("utility/test_loss", row.round, float(row.test_loss))]
        elif isinstance(row, PrivacyRow) and row.epsilon is not None and math.isfinite(row.epsilon):
            out.append(Scalar(f"privacy/{row.mechanism}/epsilon", row.round, float(row.epsilon)))
        elif isinstance(row, (LabelRow, InversionRow)) and row.ok:
            head = ("replay/" if row.replay else "") + ("label" if isinstance(row, LabelRow) else "inversion")
            fields = (("lnacc", "label_lnacc"), ("leacc", "label_leacc")) if isinstance(row, LabelRow) else (
                ("psnr", "psnr"), ("ssim", "ssim"))
            for name, attr in fields:
                value = getattr(row, attr)
                if value is not None and math.isfinite(value):
                    per[(f"{head}/{row.method}/{name}", row.round)].append(float(value))
    return sorted(out + _means(per), key=lambda s: (s.tag, s.step))


def grids(folder: RunFolder) -> list[Grid]:
    """The reconstruction grids the rows point at (files that exist), in (round, client, method) order."""
    out = []
    for row in folder.rows(InversionRow):
        if row.ok and row.image and (folder.root / row.image).is_file():
            head = "replay/" if row.replay else ""
            out.append(Grid(f"{head}reconstruction/{row.method}/client_{row.client}", row.round,
                            folder.root / row.image))
    return sorted(out, key=lambda g: (g.step, g.tag))


def check_backend(cfg: ExperimentConfig) -> None:
    """Preflight: the configured backend's library is installed (before Flower starts, not after the run)."""
    if cfg.tracking.backend != "none":
        _require(cfg.tracking.backend)


def _require(backend: str) -> None:
    import importlib.util

    if backend not in BACKENDS:
        raise ConfigError(f"tracking.backend: {backend!r} is not one of none, {', '.join(BACKENDS)}")
    if importlib.util.find_spec(_PACKAGES[backend]) is None:
        raise ConfigError(f"tracking.backend: {backend!r} needs the {_PACKAGES[backend]} package, which is not "
                          "installed (pip install -e '.[tracking]'), or set tracking.backend = \"none\"")


def export(run_dir: str | Path, backend: str | None = None, *, target: str | None = None) -> Exported:
    """Export the run in ``run_dir`` to ``backend`` (default the run's ``tracking.backend``); ``target``: the
    TensorBoard folder or MLflow URI instead of the configured one."""
    folder = RunFolder(Path(run_dir))
    if not folder.metrics.is_file():
        raise RunFolderError(f"{folder.root}: not a run folder with results (no metrics.jsonl)")
    cfg = load_config(folder.config) if folder.config.is_file() else ExperimentConfig()
    backend = backend or cfg.tracking.backend
    if backend == "none":
        raise ConfigError(f"tracking.backend: the run in {folder.root} has 'none'; pass --backend tensorboard or "
                          "--backend mlflow")
    _require(backend)
    values, images = scalars(folder), grids(folder)
    if backend == "tensorboard":
        where = Path(target or cfg.tracking.dir or folder.tensorboard)
        _tensorboard(where, values, images)
        return Exported(backend, str(where), len(values), len(images))
    uri = target or cfg.tracking.uri or folder.mlruns.resolve().as_uri()
    run_id = _mlflow(uri, cfg, folder, values, images)
    return Exported(backend, uri, len(values), len(images), run_id)


def _tensorboard(where: Path, values: list[Scalar], images: list[Grid]) -> None:
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(where))
    try:
        for s in values:
            writer.add_scalar(s.tag, s.value, s.step)
        for g in images:
            with Image.open(g.path) as img:
                writer.add_image(g.tag, np.asarray(img.convert("RGB")), g.step, dataformats="HWC")
    finally:
        writer.close()


def _mlflow(uri: str, cfg: ExperimentConfig, folder: RunFolder, values: list[Scalar], images: list[Grid]) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    if uri.startswith("file:"):  # MLflow 3 keeps its file store (one folder, no database) behind an opt-in
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(
        cfg.tracking.experiment, artifact_location=None if uri.startswith("file:") else _artifacts(folder))
    run = client.create_run(exp_id, run_name=cfg.run.name, tags={"fedsim.run_dir": str(folder.root.resolve())})
    rid = run.info.run_id
    params = [Param(k, str(v)[:500]) for k, v in sorted(cfg.to_flat().items()) if k != "run.out_dir"]
    for i in range(0, len(params), 100):  # MLflow: at most 100 params per batch
        client.log_batch(rid, params=params[i:i + 100])
    metrics = [Metric(s.tag, s.value, 0, s.step) for s in values]
    for i in range(0, len(metrics), 1000):  # and 1000 metrics
        client.log_batch(rid, metrics=metrics[i:i + 1000])
    for g in images:
        client.log_artifact(rid, str(g.path), artifact_path=_artifact_dir(g))
    client.set_terminated(rid)
    return rid


def _artifacts(folder: RunFolder) -> str:
    """Artifact root of a new experiment in a database store (else MLflow picks ./mlruns of the current folder)."""
    return folder.mlartifacts.resolve().as_uri()


def _artifact_dir(g: Grid) -> str:
    parts = g.tag.split("/")  # [replay/]reconstruction/<method>/client_C
    return "/".join(["reconstructions", *parts[parts.index("reconstruction") + 1:-1]])


def export_after_run(run_dir: Path, cfg: ExperimentConfig, quiet: bool = False) -> Exported | None:
    """The end of a run with ``tracking.backend`` set: export, print one line; a failure is a warning (the run's
    results are on disk already; ``fedsim track RUN`` exports them later)."""
    if cfg.tracking.backend == "none":
        return None
    try:
        done = export(run_dir)
    except Exception as exc:  # noqa: BLE001 - tracking must never lose a finished run
        print(f"fedsim: warning: tracking export failed ({type(exc).__name__}: {exc}); the run is complete, "
              f"export it later with: fedsim track {run_dir}")
        return None
    if not quiet:
        print(done.line())
    return done


__all__ = ["BACKENDS", "Exported", "Grid", "Scalar", "check_backend", "export", "export_after_run", "grids", "scalars"]
