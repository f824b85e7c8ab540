"""A multi-node Ray cluster on this machine for tests and benchmarks: a head without CPUs and N worker nodes of one
CPU each, all on 127.0.0.1 (``ray.cluster_utils.Cluster``, every node's processes children of this process).

Ray maps 127.0.0.1 to the machine's other address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
(``ray._private.services.get_node_ip_address``), which also makes ``ray start`` refuse worker nodes; hence
``Cluster`` with that variable set here (the nodes and the ``fedsim sweep`` subprocesses inherit it). ``Cluster``
also writes ``/tmp/ray/ray_current_cluster``, which a plain ``ray.init()`` elsewhere on the machine would join:
that write is switched off. Stopped by :meth:`stop` (every node's processes, by PID)."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

# the last two: node start-up waits long enough on a 2-core machine under load (the agents start slowly)
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_agent_register_timeout_ms": "180000", "RAY_raylet_start_wait_time_s": "180"}


def descendants(pid: int) -> list[int]:
    """Live processes below ``pid`` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _environs():
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            yield int(entry.name), dict(kv.split(b"=", 1) for kv in raw if b"=" in kv)


def worker_node(cluster: "LoopbackCluster", task_name: str):
    """The worker node whose Ray worker runs a task named ``task_name`` now (``ray::<name>``), or None."""
    for pid, env in _environs():
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"ray::{task_name}".encode() in args:
            for node in cluster.workers:
                if str(node.all_processes["raylet"][0].process.pid).encode() == env.get(b"RAY_RAYLET_PID"):
                    return node
    return None


def live(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def agent_ports() -> dict[str, int]:
    """Fixed ports for a node's agents: with port 0 the raylet waits for the agents to write their port files and
    aborts after ~15 s, which a loaded 2-core machine misses."""
    from fedsim.lab.flower_runtime import free_port

    return {k: free_port() for k in ("metrics_agent_port", "metrics_export_port", "dashboard_agent_listen_port",
                                     "runtime_env_agent_port")}


class LoopbackCluster:
    def __init__(self, workers: int = 2) -> None:
        os.environ.update(LOOPBACK_ENV)
        import ray._private.ray_constants as constants
        import ray._private.utils
        from ray.cluster_utils import Cluster

        constants.ENABLE_RAY_CLUSTER = False  # in case ray was imported before the variable was set
        ray._private.utils.write_ray_address = lambda *a, **k: None  # no /tmp/ray/ray_current_cluster
        self.temp = tempfile.mkdtemp(prefix="fedsim-ray-", dir="/tmp")  # short: Ray's unix sockets live below it
        t0 = time.monotonic()
        self.cluster = Cluster(initialize_head=False, connect=False, shutdown_at_exit=True)
        self._add(num_cpus=0, include_dashboard=False, temp_dir=self.temp)  # the head
        self.workers = [self.add_worker() for _ in range(workers)]
        self.cluster.wait_for_nodes()
        self.start_s = time.monotonic() - t0
        self.address = self.cluster.address

    def add_worker(self):
        return self._add(num_cpus=1)

    def _add(self, tries: int = 4, **args):
        """Start a node; a raylet that gave up waiting for its slow agents (a loaded machine) is cleaned up (the
        processes this attempt started, by PID) and started again."""
        for attempt in range(tries):
            before = set(descendants(os.getpid()))
            old = os.getpriority(os.PRIO_PROCESS, 0)
            try:  # the node's processes start at a higher priority (where allowed), then go back to ours
                os.setpriority(os.PRIO_PROCESS, 0, -19)
            except OSError:
                pass
            try:
                return self.cluster.add_node(node_ip_address="127.0.0.1", **agent_ports(), **args)
            except Exception:  # noqa: BLE001 - Ray raises a bare Exception on a node start-up timeout
                if attempt == tries - 1:
                    raise
                for pid in set(descendants(os.getpid())) - before:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            finally:
                for pid in [os.getpid(), *(set(descendants(os.getpid())) - before)]:
                    try:
                        os.setpriority(os.PRIO_PROCESS, pid, old)
                    except OSError:
                        pass

    def node_pids(self, node) -> list[int]:
        """The node's processes: its raylet and agents, the Ray workers it started (not its children: found by
        their ``RAY_RAYLET_PID``), and everything those started (a federation's SuperLink, ...)."""
        roots = [p.process.pid for procs in node.all_processes.values() for p in procs]
        raylets = {str(p.process.pid).encode() for p in node.all_processes.get("raylet", [])}
        roots += [pid for pid, env in _environs() if env.get(b"RAY_RAYLET_PID") in raylets]
        return sorted({*roots, *(d for r in roots for d in descendants(r))})

    def kill_worker(self, node) -> list[int]:
        """The node's machine dies: every process of it (raylet, its workers and what they started, e.g. a
        federation's SuperLink) gets SIGKILL, then the node is removed. Returns the PIDs killed."""
        pids = self.node_pids(node)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)
        return pids

    def all_pids(self) -> list[int]:
        nodes = [self.cluster.head_node, *self.cluster.worker_nodes]
        return [pid for n in nodes if n is not None for pid in self.node_pids(n)]

    def stop(self) -> list[int]:
        """Stop every node; returns the PIDs of this cluster still alive afterwards (should be none)."""
        pids = self.all_pids()
        self.cluster.shutdown()
        deadline = time.monotonic() + 20
        while live(pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in live(pids):
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        return live(pids)
