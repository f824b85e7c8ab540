"""``fedsim deploy-local``: the same federation as ``fedsim run``, but as a real Flower deployment on 127.0.0.1.

One SuperLink (no ``--simulation``), ``N`` SuperNodes (``--node-config "partition-id=i num-partitions=N"``,
default subprocess isolation: each SuperNode's SuperExec starts the ClientApp processes), then
``flwr run . fedsim --stream``. These are the very commands of ``docker-compose.yml`` with loopback addresses
and free ports. Writes the same run folder as ``fedsim run`` (config.toml, captures, metrics.jsonl, audit,
rejections.jsonl, logs) and stops every process it started by process group, also on failure or Ctrl-C.
"""

from __future__ import annotations

import time
from pathlib import Path

from fedsim.core.config import ConfigError, ExperimentConfig
from fedsim.core.runfolder import RunFolder
from fedsim.lab.flower_runtime import local_superlink, start_supernodes
from fedsim.lab.runner import FederationFailed, ensure_done, follow_run, prepare_run_dir


def _wait_nodes(log_path: Path, procs, n: int, timeout: float) -> None:
    """Wait until the SuperLink log shows ``n`` activated SuperNodes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise FederationFailed(f"a Flower process exited with code {p.returncode}; see {log_path.parent}")
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        if text.count("Activated node_id") >= n:
            return
        time.sleep(0.3)
    raise FederationFailed(f"{n} SuperNodes did not connect within {timeout:.0f}s; see {log_path.parent}")


def deploy_local(cfg: ExperimentConfig, nodes: int, out: Path, quiet: bool = False,
                 connect_timeout: float = 90.0, plan=None) -> Path:
    """Run ``cfg`` on a local SuperLink + ``nodes`` SuperNodes into ``out``; returns the run folder. ``plan``: the
    attack plan the preflight built (else built when the run is resolved)."""
    if nodes < 1:
        raise ConfigError(f"--nodes: {nodes} is below the minimum 1")
    if cfg.run.num_clients != nodes:
        raise ConfigError(f"run.num_clients: {cfg.run.num_clients} must equal --nodes {nodes} "
                          f"(add --set run.num_clients={nodes})")
    if cfg.train.min_train_nodes > nodes:
        raise ConfigError(f"train.min_train_nodes: {cfg.train.min_train_nodes} exceeds --nodes {nodes}")
    cfg, out = prepare_run_dir(cfg, out, plan)
    logs = RunFolder(out).logs
    flwr_home = RunFolder(out).flwr_home
    with local_superlink(flwr_home, logs, simulation=False) as (address, procs):
        start_supernodes(address, nodes, flwr_home, logs, procs)
        _wait_nodes(logs / "superlink.log", procs, nodes, connect_timeout)
        follow_run(cfg, out, flwr_home, procs, quiet=quiet)
    return ensure_done(out, "deployment")
