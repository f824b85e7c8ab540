"""``fedsim run``: one federation on Flower's simulation engine (Ray backend), end to end.

Resolves and writes the config, starts a private SuperLink, submits the app with ``flwr run``, shows a
progress bar per round (read from ``metrics.jsonl``) and stops every process it started.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path

from fedsim.core.config import ExperimentConfig, to_toml
from fedsim.core.experiment import device
from fedsim.lab.flower_runtime import flwr_run, local_superlink, stop_process
from fedsim.core.rows import UtilityRow
from fedsim.core.runfolder import RunFolder


from fedsim.core.errors import FederationFailed  # noqa: E402,F401  (re-exported)


def prepare_run_dir(cfg: ExperimentConfig, out: Path, plan=None) -> tuple[ExperimentConfig, Path]:
    """Absolute run folder (old artifacts removed), the resolved config written to ``config.toml`` and the run
    resolved once (``resolved.json``: fingerprint, attack plan, defenses, data spec; ``plan``: the preflight's,
    else built here), which the ServerApp, ClientApps and attack workers rehydrate without checking again.

    The folder must be new, empty or marked as a fedsim run folder (``RunFolder.prepare``); anything else is
    refused with ``RunFolderError`` (exit 2) before Flower starts, nothing touched. ``run.out_dir`` becomes the
    absolute folder, so the ServerApp and every ClientApp write into this one folder."""
    from fedsim.evaluation.resolution import resolve_run

    out = out.expanduser().resolve()
    folder = RunFolder(out)
    folder.prepare()
    # a plain string key: no cross-section check depends on it, so the checked config stays checked
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(out)))
    folder.config.write_text(to_toml(cfg))
    resolve_run(cfg, out, plan).save(folder.resolved)
    return cfg, out


def _progress(out: Path, proc: subprocess.Popen, cfg: ExperimentConfig, quiet: bool) -> None:
    folder = RunFolder(out)
    if quiet:
        proc.wait()
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from fedsim.lab.attack_queue import queue_of_config

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn()) as bar:
        task = bar.add_task("rounds", total=cfg.run.num_rounds, status="starting Flower...")
        attacks = None  # the attack queue's bar (fedsim.lab.attack_queue), once an attack is selected
        polls = 0  # the queue lists captures/: read every 4th poll
        while True:
            running = proc.poll() is None
            every = folder.rows()
            rows = [r for r in every if isinstance(r, UtilityRow) and r.round > 0]
            if rows:
                last = rows[-1]
                trained = last.round >= cfg.run.num_rounds
                bar.update(task, completed=last.round,
                           status=f"test acc {last.test_accuracy:.3f}  loss {last.test_loss:.3f}"
                           + ("  (training done)" if trained and running else ""))
            polls += 1
            queue = queue_of_config(folder, every, cfg) if polls % 4 == 1 or not running else None  # every 2 s
            if queue is not None:
                if attacks is None:
                    attacks = bar.add_task("attacks", total=queue.total, status="")
                bar.update(attacks, completed=queue.done, total=queue.total, status=queue.text())
            if not running:
                break
            time.sleep(0.5)


def follow_run(cfg: ExperimentConfig, out: Path, flwr_home: Path, procs: list[subprocess.Popen],
               federation: str | None = None, quiet: bool = False) -> None:
    """Submit the app with ``flwr run --stream`` to the SuperLink of ``flwr_home`` and follow it to the end."""
    from fedsim.lab.flower_app import write_app

    folder = RunFolder(out)
    app = write_app(flwr_home / "fedsim-app")  # a pyproject.toml only: the processes import the installed fedsim
    proc = flwr_run(flwr_home, folder.config, folder.flower_log, app, federation)
    procs.append(proc)
    try:
        _progress(out, proc, cfg, quiet)
    except KeyboardInterrupt:
        stop_process(proc)
        raise


def ensure_done(out: Path, what: str) -> Path:
    """The ServerApp writes ``DONE`` last; without it, fail with the tail of Flower's log."""
    folder = RunFolder(out)
    if not folder.done.exists():
        log = folder.flower_log
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
        raise FederationFailed(f"the {what} did not finish; last lines of {log}:\n{tail}")
    return out


def print_disk_estimate(cfg: ExperimentConfig) -> None:
    """One line before Flower starts: the captures and audit store this run will write (``fedsim.lab.check``)."""
    from fedsim.lab.check import estimate

    try:
        print(estimate(cfg).line(), flush=True)
    except Exception as exc:  # noqa: BLE001 - an estimate must never stop a run the preflight accepted
        print(f"expected disk use: no estimate ({type(exc).__name__}: {exc})", flush=True)


def gpu_share(num_clients: int) -> float:
    """Fraction of one GPU per simulated client: all of them fit at once, but no less than a tenth."""
    return round(max(0.1, min(1.0, 1.0 / max(1, num_clients))), 3)


def run_federation(cfg: ExperimentConfig, out: Path, quiet: bool = False, plan=None) -> Path:
    """Run the federation described by ``cfg`` into ``out``; returns the run folder. ``plan``: the attack plan
    the preflight built (else built when the run is resolved)."""
    cfg, out = prepare_run_dir(cfg, out, plan)
    if not quiet:
        print_disk_estimate(cfg)
    folder = RunFolder(out)
    flwr_home = folder.flwr_home
    federation = f"num-supernodes={cfg.run.num_clients} client-resources-num-cpus=1"
    if device(cfg).type == "cuda":  # a GPU share per simulated client (Flower's client resources)
        federation += f" client-resources-num-gpus={gpu_share(cfg.run.num_clients)}"
    if os.environ.get("FEDSIM_RAY_INIT_ARGS"):  # a sweep's Ray task: Flower's Ray within the task's resources
        federation += " " + os.environ["FEDSIM_RAY_INIT_ARGS"]
    with local_superlink(flwr_home, folder.logs) as (_, procs):
        follow_run(cfg, out, flwr_home, procs, federation, quiet)
    ensure_done(out, "federation")
    from fedsim.lab.tracking import export_after_run

    export_after_run(out, cfg, quiet)  # [tracking]: rows and grids to TensorBoard / MLflow (off by default)
    return out
