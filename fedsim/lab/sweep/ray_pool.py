"""A sweep's federations as Ray tasks on an existing cluster: ``fedsim sweep FILE --ray auto|ADDRESS`` (or
``[sweep] ray = ...`` / a ``[sweep.ray]`` table in the sweep file).

Each (setting, seed) federation is one Ray task holding the resources of :class:`RaySpec` (``num_cpus``,
``num_gpus``: a GPU share, ``memory_gb``), spread over the nodes (``SPREAD``); the sweep's cache, resume,
progress, ``--only``, replays and ``sweep.html`` stay in :mod:`~.execute` on the machine that started the sweep, which
only swaps its runner for :meth:`RayPool.wrap`'s.

Where the results go: **shared storage**. A federation writes its run folder from several processes at once (the
ServerApp's rows and captures, every ClientApp's ground truth, the attack workers' reconstructions), and with
``simulation = "cluster"`` or ``attack.backend = "ray"`` those processes sit on other nodes. Shipping a finished
folder back as bytes would only work if a whole federation stayed on one node, and a run cut short by a lost node
would leave nothing to resume from; so ``--out`` must be a folder every node mounts at the same path (NFS, a
cluster file system; on one machine with several nodes it is trivially shared). :meth:`RayPool.connect` checks it
before any work: a probe file written here must be read back by a task pinned to every alive node.

How the federation's Flower simulation uses Ray (``simulation``):

- ``cluster`` (default): the simulation joins this cluster (``RAY_ADDRESS``: Flower 1.41's ``RayBackend.init_ray``
  calls ``ray.init`` with no address, which reads it; its federation config has no address field), so one
  federation's clients and attacks spread over every node and no federation starts a Ray of its own. Flower sizes a
  federation's actor pool to every CPU of the cluster (``pool_size_from_resources``), so two such federations at
  once could each wait forever for actors the other holds: they run one at a time and their task holds no CPU.
- ``node``: a Ray of its own on the task's node, bounded by the task's resources through Flower's backend init
  arguments (``init-args-num-cpus`` / ``init-args-num-gpus`` of ``flwr run --federation-config``), so federations
  run side by side, as many as the cluster has room for, and never wait for each other's clients.

A task that fails in the federation raises its own error (``FederationFailed``: retried as with the local pool);
a task whose node or worker died raises :class:`FederationLost`, not retried: the sweep ends non-zero naming it and
the same command runs only what is missing. Each finished task appends a line to ``DIR/ray_tasks.jsonl`` (node,
seconds inside the task, seconds the driver waited), the per-federation overhead of going through Ray.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fedsim.core.config import ConfigError
from fedsim.core.errors import FederationFailed, FedsimError

SIMULATION = ("node", "cluster")
KEYS = ("address", "num_cpus", "num_gpus", "memory_gb", "simulation")
TASKS = "ray_tasks.jsonl"


class FederationLost(FederationFailed):
    """The node (or worker process) running a federation died; not retried within the sweep."""


@dataclass(frozen=True)
class RaySpec:
    """Where and with what a sweep's federation tasks run (see the module docstring)."""

    address: str = "auto"
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_gb: float = 0.0
    simulation: str = "cluster"

    def task_options(self) -> dict[str, Any]:
        cpus = 0.0 if self.simulation == "cluster" else self.num_cpus
        opts: dict[str, Any] = {"num_cpus": cpus, "num_gpus": self.num_gpus, "max_retries": 0,
                                "scheduling_strategy": "SPREAD"}
        if self.memory_gb > 0:
            opts["memory"] = int(self.memory_gb * 2**30)
        return opts

    def federation_env(self, gcs_address: str) -> dict[str, str]:
        """What the task sets before starting the federation (read by ``flower_env`` / ``run_federation``)."""
        if self.simulation == "cluster":
            return {"RAY_ADDRESS": gcs_address, "FEDSIM_RAY_INIT_ARGS": ""}
        init = f"init-args-num-cpus={max(1, math.floor(self.num_cpus))} " \
               f"init-args-num-gpus={math.ceil(self.num_gpus)}"
        return {"RAY_ADDRESS": "local", "FEDSIM_RAY_INIT_ARGS": init}


def ray_spec(value: Any, where: str, address: str | None = None) -> RaySpec | None:
    """The spec from a sweep file's ``ray`` value (an address string or a table of :data:`KEYS`), with the CLI's
    ``--ray ADDRESS`` (``address``) taking precedence; None when neither asks for Ray. Bad keys or values are a
    one-line ``ConfigError``."""
    if value is None and address is None:
        return None
    table: dict[str, Any] = {}
    if isinstance(value, str):
        table["address"] = value
    elif isinstance(value, dict):
        table = dict(value)
    elif value is not None:
        raise ConfigError(f"{where}: [sweep] ray must be an address ('auto' or HOST:PORT) or a table of {KEYS}")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}: [sweep.ray] {unknown[0]!r} is not a key; valid: {', '.join(KEYS)}")
    if address is not None:
        table["address"] = address
    for key in ("num_cpus", "num_gpus", "memory_gb"):
        if key in table and (isinstance(table[key], bool) or not isinstance(table[key], (int, float))
                             or table[key] < 0):
            raise ConfigError(f"{where}: [sweep.ray] {key} = {table[key]!r}: must be a number >= 0")
    if table.get("simulation", "cluster") not in SIMULATION:
        raise ConfigError(f"{where}: [sweep.ray] simulation = {table['simulation']!r}: valid: {', '.join(SIMULATION)}")
    addr = str(table.get("address") or "auto")
    if addr != "auto" and not _host_port(addr):
        raise ConfigError(f"--ray {addr!r}: not 'auto' nor HOST:PORT (the head's address, as `ray start --head` "
                          "printed it)")
    return RaySpec(addr, float(table.get("num_cpus", 1.0)), float(table.get("num_gpus", 0.0)),
                   float(table.get("memory_gb", 0.0)), str(table.get("simulation", "cluster")))


def _host_port(address: str) -> tuple[str, int] | None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


#: what a Ray worker's environment says about its own raylet and job; a federation's processes start without it
WORKER_ENV = ("RAY_RAYLET_PID", "RAY_JOB_ID", "RAY_CLIENT_MODE", "RAY_LD_PRELOAD_ON_WORKERS")


def _run_on_node(runner: Callable, cfg: Any, out: str, quiet: bool, env: dict[str, str]) -> dict[str, Any]:
    """The Ray task: the federation on this node, with ``env`` set for Flower's processes."""
    import ray

    saved = {k: os.environ.get(k) for k in (*env, *WORKER_ENV)}
    for k in WORKER_ENV:
        os.environ.pop(k, None)
    os.environ.update(env)
    t0 = time.monotonic()
    try:
        run = runner(cfg, Path(out), quiet)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    ctx = ray.get_runtime_context()
    return {"run": str(run), "node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
            "host": socket.gethostname(), "task_s": round(time.monotonic() - t0, 3)}


def _read_probe(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        return f"unreadable: {exc}"


class RayPool:
    """A connection to the cluster for one sweep: checked up front, then :meth:`wrap` turns the sweep's runner into
    one that runs each federation as a Ray task; :meth:`close` disconnects (the cluster stays up)."""

    def __init__(self, spec: RaySpec, out: Path, gcs_address: str, capacity: int) -> None:
        self.spec, self.out, self.gcs_address, self.capacity = spec, out, gcs_address, capacity
        self.lock = threading.Lock()

    @classmethod
    def connect(cls, spec: RaySpec, out: Path, attack_gpus: float = 0.0) -> "RayPool":
        """Connect, then refuse in one line before any work: an address nobody answers at, a cluster where no node
        has the task's resources (or no GPU for ``attack.num_gpus``), a ``--out`` some node cannot see."""
        hp = _host_port(spec.address)
        if hp is not None:
            try:
                socket.create_connection(hp, timeout=5).close()
            except OSError as exc:
                raise ConfigError(f"--ray {spec.address}: no Ray cluster answers there ({exc.strerror or exc}); "
                                  "start one with `ray start --head` (docs/deployment.md)") from None
        import ray

        import warnings

        try:
            with warnings.catch_warnings():  # Ray's FutureWarning about GPU env vars: not the user's business here
                warnings.simplefilter("ignore", FutureWarning)
                ray.init(address=spec.address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"--ray {spec.address}: cannot join the cluster: {str(exc).splitlines()[0]}") from None
        try:
            pool = cls(spec, out, ray.get_runtime_context().gcs_address, cls._check_resources(spec, attack_gpus))
            pool._check_shared()
        except BaseException:
            ray.shutdown()
            raise
        return pool

    @staticmethod
    def _check_resources(spec: RaySpec, attack_gpus: float) -> int:
        """How many federation tasks fit at once; none fitting on any node is a one-line error."""
        import ray

        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive") and n.get("Resources")]
        need = {"CPU": spec.task_options()["num_cpus"], "GPU": spec.num_gpus, "memory": spec.memory_gb * 2**30}
        fits = 0
        for res in nodes:
            per = [math.floor(res.get(k, 0.0) / v + 1e-9) for k, v in need.items() if v > 0]
            fits += min(per) if per else 1
        total = {k: sum(r.get(k, 0.0) for r in nodes) for k in ("CPU", "GPU")}
        what = f"{len(nodes)} nodes, {total['CPU']:g} CPUs, {total['GPU']:g} GPUs"
        if fits == 0:
            ask = ", ".join(f"{k}={v:g}" for k, v in (("num_cpus", need["CPU"]), ("num_gpus", spec.num_gpus),
                                                          ("memory_gb", spec.memory_gb)) if v > 0)
            raise ConfigError(f"--ray {spec.address}: no node of the cluster ({what}) has the resources of one "
                              f"federation task ([sweep.ray] {ask}); lower them or add a node with them")
        if attack_gpus > 0 and total["GPU"] < attack_gpus:
            raise ConfigError(f"attack.num_gpus = {attack_gpus:g}: the cluster at {spec.address} ({what}) has no GPU "
                              "for an attack task; set attack.num_gpus = 0 or add a GPU node")
        if spec.simulation == "cluster":
            return 1
        return fits if any(v > 0 for v in need.values()) else max(1, len(nodes))

    def _check_shared(self) -> None:
        """Every alive node must read the probe file written here in ``--out`` (shared storage)."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = uuid.uuid4().hex
        probe = self.out / f".ray_probe_{token[:8]}"
        probe.write_text(token, encoding="utf-8")
        try:
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            read = ray.remote(_read_probe)
            refs = {n["NodeManagerAddress"] + " " + n["NodeID"][:8]: read.options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                str(probe)) for n in nodes}
            blind = [name for name, ref in refs.items() if ray.get(ref, timeout=300) != token]
        finally:
            probe.unlink(missing_ok=True)
        if blind:
            raise ConfigError(f"--ray: node {blind[0]} cannot read {self.out}: --out must be on storage every node "
                              "mounts at the same path (NFS, a cluster file system; docs/deployment.md)")

    def wrap(self, runner: Callable) -> Callable:
        """A runner with the sweep's signature that runs ``runner`` as a Ray task and waits for it."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        task = ray.remote(_run_on_node).options(**self.spec.task_options())
        env = self.spec.federation_env(self.gcs_address)
        gate = threading.Semaphore(1) if self.spec.simulation == "cluster" else None

        def run(cfg: Any, out: Path, quiet: bool) -> Path:
            if gate is not None:
                gate.acquire()
            t0 = time.monotonic()
            try:
                info = ray.get(task.remote(runner, cfg, str(out), quiet, env))
            except RayTaskError as exc:  # the federation's own error, as the local pool would see it
                cause = getattr(exc, "cause", None)
                if isinstance(cause, FedsimError):
                    raise cause from None
                # anything else (a SuperLink killed with its machine: "process exited with code -9") loses this
                # federation only, never the sweep
                what = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
                raise FederationLost(f"{out}: {what.splitlines()[0][:300]}") from None
            except RayError as exc:
                raise FederationLost(f"{out}: its Ray task was lost ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:200]})") from None
            finally:
                if gate is not None:
                    gate.release()
            info["driver_s"] = round(time.monotonic() - t0, 3)
            info["folder"] = str(out)
            with self.lock, open(self.out / TASKS, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(info) + "\n")
            return Path(info["run"])

        return run

    def close(self) -> None:
        import ray

        ray.shutdown()
