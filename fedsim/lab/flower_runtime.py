"""Start and stop Flower processes (SuperLink, SuperNodes) on 127.0.0.1 and drive ``flwr run``.

No ``flwr`` import: Flower is driven through its own console scripts, as a user would, so ``fedsim`` stays
importable without the Flower stack. Every process started here runs in its own session and is stopped by
process group (also on failure or Ctrl-C). ``FLWR_HOME`` lives inside the run folder and runtime dependency
installation is disabled. The app ``flwr run`` submits is the code-free folder of ``fedsim.lab.flower_app``: every
Flower process imports the installed fedsim, and nothing is added to their ``PYTHONPATH`` (the user's own entries
are passed on, made absolute, since the processes start in ``FLWR_HOME``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flower_env(flwr_home: Path) -> dict[str, str]:
    env = os.environ.copy()
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["FLWR_HOME"] = str(flwr_home)
    env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env["RAY_DEDUP_LOGS"] = "0"
    # Flower's ray.init() has no address: without RAY_ADDRESS it would join a `ray start` cluster found on this
    # machine; "local" starts the federation's own Ray. A sweep's Ray task sets it (fedsim.lab.sweep.ray_pool).
    env.setdefault("RAY_ADDRESS", "local")
    user_path = [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if user_path:  # the user's own entries only (their module:attr and plugins), absolute
        env["PYTHONPATH"] = os.pathsep.join(user_path)
    else:
        env.pop("PYTHONPATH", None)
    return env


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a process and its whole group (Ray workers, SuperExec, ...), and wait until the group is gone:
    the leader can exit while Ray's actors of its group are still shutting down (seen under load), and a
    ``fedsim run`` that returned must leave no process behind."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        if _group_gone(proc.pid, timeout):
            break
    proc.poll()


def _group_gone(pgid: int, timeout: float) -> bool:
    """Poll until no live process of the group is left (True), or ``timeout`` seconds passed (False). Zombies
    do not count (a container without an init may never reap them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _live_members(pgid):
            return True
        time.sleep(0.1)
    return False


def _live_members(pgid: int) -> bool:
    """Whether a non-zombie process of group ``pgid`` exists (``/proc``; elsewhere ``killpg(pgid, 0)``)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:  # state, ppid, pgrp
                return True
    return False


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=0.5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s; see {log_path}")


@contextmanager
def local_superlink(flwr_home: Path, log_dir: Path, simulation: bool = True,
                    extra_args: tuple[str, ...] = ()) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A SuperLink on free loopback ports; yields its HTTP address and the list of started processes.

    Writes ``FLWR_HOME/config.toml`` with a default connection ``fedsim`` pointing at it.
    """
    flwr_home.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    port, control = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "fedsim"\n\n[superlink.fedsim]\naddress = "{address}"\ninsecure = true\n')
    cmd = ["flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(port),
           "--control-api-address", f"127.0.0.1:{control}", "--disable-runtime-dependency-installation",
           *(["--simulation"] if simulation else []), *extra_args]
    log_path = log_dir / "superlink.log"
    procs: list[subprocess.Popen] = []
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=flower_env(flwr_home), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(flwr_home))
    procs.append(proc)
    try:
        wait_http(f"http://{address}/health", proc, 60, log_path)
        yield address, procs
    finally:
        for p in reversed(procs):
            stop_process(p)


def supernode_command(superlink: str, partition_id: int, num_partitions: int, port: int | None = None,
                      insecure: bool = True, extra_args: tuple[str, ...] = ()) -> list[str]:
    """The ``flower-supernode`` command line for one partition (as in docker-compose.yml)."""
    cmd = ["flower-supernode", *(["--insecure"] if insecure else []), "--superlink", superlink,
           "--node-config", f"partition-id={partition_id} num-partitions={num_partitions}"]
    if port is not None:
        cmd += ["--host", "127.0.0.1", "--port", str(port)]
    return cmd + list(extra_args)


def start_supernodes(superlink: str, num_nodes: int, flwr_home: Path, log_dir: Path,
                     procs: list[subprocess.Popen]) -> list[subprocess.Popen]:
    """Start ``num_nodes`` SuperNodes (partition ids 0..N-1, free Runtime API ports), each in its own session.

    Every process is appended to ``procs`` as soon as it starts, so the caller's cleanup stops it.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    started = []
    for i in range(num_nodes):
        cmd = supernode_command(superlink, i, num_nodes, port=free_port(),
                                extra_args=("--max-retries", "30", "--max-wait-time", "120"))
        with (log_dir / f"supernode_{i}.log").open("w") as log:
            proc = subprocess.Popen(cmd, env=flower_env(flwr_home), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=str(flwr_home))
        procs.append(proc)
        started.append(proc)
    return started


def flwr_run(flwr_home: Path, run_config: Path, log_path: Path, app_dir: Path,
             federation_config: str | None = None) -> subprocess.Popen:
    """Start ``flwr run APP fedsim --run-config FILE --stream`` (returns the process; caller waits); ``app_dir``:
    the folder of ``fedsim.lab.flower_app.write_app``."""
    cmd = ["flwr", "run", str(app_dir), "fedsim", "--run-config", str(run_config), "--stream"]
    if federation_config:
        cmd += ["--federation-config", federation_config]
    log = log_path.open("w")
    try:
        return subprocess.Popen(cmd, env=flower_env(flwr_home), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(app_dir))
    finally:
        log.close()
