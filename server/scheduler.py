"""Attack scheduling off the federation's critical path.

Each accepted update's capture file is submitted to a pool of worker processes (``attack.workers``; 0 runs
inline), or with ``attack.backend = "ray"`` to the Ray the federation runs in, as one task per attacked update
holding ``attack.num_cpus`` / ``attack.num_gpus`` (:class:`RayJob`; Ray places it on any node of the cluster). At most ``attack.queue_size`` attacks are pending; when the queue is full, ``attack.queue_policy``
says whether the round waits for the oldest one (``wait``, back-pressure) or the update is not attacked
(``drop``, logged as a ``skipped`` row). ``close()`` waits for outstanding attacks (each at most
``attack.timeout`` seconds, then scored as failed) before the run ends. Rows are appended by this process only.

The worker processes are ``attack.workers`` lanes (:class:`RoundLanes`, one process each): the attacked updates of
one round go to one lane, whose worker keeps a ``CalibrationCache`` (``fedsim.attacks.inversion.calibration``), so
``ig-shadow`` calibrates once per round's model and schedule; attacks run inline share the scheduler's own cache.
Across lanes (and on Ray, where each task starts without one) nothing is shared: a round split over two workers
would calibrate twice, never wrongly. A lane's worker holds one queued attack beside the running one (the pool's
extra queued call), whose ``attack.timeout`` then counts from its queueing, as the pool's did before.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import deque
from dataclasses import dataclass
from concurrent.futures import Future, ProcessPoolExecutor, TimeoutError as FutureTimeout
from pathlib import Path
from typing import Iterator

from fedsim.core.captures import CaptureStore
from fedsim.core.config import ExperimentConfig, parse_selection
from fedsim.attacks.inversion.calibration import CalibrationCache
from fedsim.evaluation.attacking import attack_and_score, attack_error_row, plan_from_config
from fedsim.core.resolved import ResolvedRun
from fedsim.evaluation.resolution import attack_plan
from fedsim.core.rows import InversionRow, LabelRow, Row, SkippedRow
from fedsim.core.runfolder import RunFolder
from fedsim.core.types import ClientUpdate

log = logging.getLogger("fedsim.server")


@dataclass
class Pending:
    """A submitted attack; ``started`` is when it was first seen running on a worker (its timeout's origin)."""

    future: Future
    ident: dict
    started: float | None = None

    def mark_running(self) -> bool:
        if self.started is None and (self.future.running() or self.future.done()):
            self.started = time.monotonic()
        return self.started is not None


class AttackScheduler:
    """Sink: ``__call__(update)`` schedules the attack; ``close()`` drains the queue."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, resolved: ResolvedRun | None = None) -> None:
        """``resolved``: the run as loaded (``fedsim.core.resolved``): its plan, data spec and fingerprint go to
        every attack, which then neither re-plans nor re-checks the config; without it the plan is built here."""
        self.cfg = cfg
        self.flat = cfg.to_flat()
        self.run_dir = Path(run_dir)
        self.folder = RunFolder(self.run_dir)
        self.rounds = parse_selection("attack.rounds", cfg.attack.rounds)
        self.clients = parse_selection("attack.clients", cfg.attack.clients)
        self.store = CaptureStore(self.run_dir)  # the round's global model once, then the client file
        # built once, at load (the lab's preflight, or the ServerApp's own check); the workers take it
        self.plan = attack_plan(resolved) if resolved is not None else plan_from_config(cfg)
        self.vouched = resolved.fingerprint if resolved is not None else None
        self.data = dict(resolved.data) if resolved is not None else None
        self.submitted = 0
        self.pending: deque[Pending] = deque()
        self.pool = None
        self.stuck = False  # a timed-out attack still occupies a worker
        self.ray = cfg.attack.backend == "ray"
        self.calibrations = CalibrationCache()  # the inline attacks' (attack.workers = 0); each lane has its own
        if cfg.attack.workers > 0 and not self.ray:
            self.pool = RoundLanes(cfg.attack.workers)

    def __repr__(self) -> str:
        return f"AttackScheduler(backend={self.cfg.attack.backend}, workers={self.cfg.attack.workers})"

    def selected(self, update: ClientUpdate) -> bool:
        budget = self.cfg.attack.max_attacks
        return (self.rounds is None or update.server_round in self.rounds) and \
            (self.clients is None or update.client_id in self.clients) and (not budget or self.submitted < budget)

    def __call__(self, update: ClientUpdate) -> None:
        """Schedule the attack of a selected update; a failure to schedule it (the capture cannot be written, the
        worker pool broke) is an ``attack_error`` row, and the round goes on."""
        if not self.selected(update):
            return
        ident = {"round": update.server_round, "client": update.client_id}
        try:
            self._schedule(update, ident)
        except Exception as exc:  # noqa: BLE001 - an attack that cannot be scheduled fails, not the federation
            log.error("round %d client %d: the attack could not be scheduled: %s", *ident.values(), exc)
            self._write(ident, f"attack not scheduled: {type(exc).__name__}: {exc}"[:500])

    def _schedule(self, update: ClientUpdate, ident: dict) -> None:
        path = self.folder.capture(update.server_round, update.client_id)
        if not path.exists():
            self.store.save(update)  # an attacked update is always captured
        self.submitted += 1
        if self.pool is None and not self.ray:
            self._write(ident, self._run_inline(path))
            return
        while len(self.pending) >= self.cfg.attack.queue_size:
            if self.cfg.attack.queue_policy == "drop":
                log.warning("attack queue full: round %d client %d not attacked", *ident.values())
                self.folder.append(SkippedRow(**ident, reason="attack queue full"))
                return
            self._finish(self.pending.popleft())
        args = (str(path), self.flat, str(self.run_dir), self.plan, self.vouched, self.data)
        if self.ray:
            job = RayJob.submit(args, self.cfg.attack.num_cpus, self.cfg.attack.num_gpus)
        else:
            job = self._submit_local(update.server_round, args)
        self.pending.append(Pending(job, ident))
        self._collect_done()

    def _run_inline(self, path: Path) -> list[Row] | str:
        try:
            return attack_and_score(path, self.flat, self.run_dir, self.plan, self.vouched, self.data,
                                    calibration_cache=self.calibrations)
        except Exception as exc:  # noqa: BLE001
            return f"{type(exc).__name__}: {exc}"

    def _submit_local(self, server_round: int, args: tuple) -> Future:
        """One attack on the local workers: a round's lane (:class:`RoundLanes`), or any executor put in its place."""
        if isinstance(self.pool, RoundLanes):
            return self.pool.submit(server_round, _attack_in_worker, *args)
        return self.pool.submit(_attack_in_worker, *args)

    def _collect_done(self) -> None:
        for job in self.pending:
            job.mark_running()
        while self.pending and self.pending[0].future.done():
            self._finish(self.pending.popleft())

    def _finish(self, job: "Pending") -> None:
        """Wait for one attack: ``attack.timeout`` counts from when a worker started it, not queue time."""
        future, ident = job.future, job.ident
        wait_start = time.monotonic() + self.cfg.attack.timeout  # a worker held by a stuck attack never frees
        while not job.mark_running() and time.monotonic() < wait_start:
            time.sleep(0.05)
        started = job.started if job.started is not None else time.monotonic() - self.cfg.attack.timeout
        remaining = max(1.0, self.cfg.attack.timeout - (time.monotonic() - started))
        try:
            rows = future.result(timeout=remaining)
        except FutureTimeout:
            self.stuck = not future.cancel()
            rows = f"timed out after {self.cfg.attack.timeout}s"
        except Exception as exc:  # noqa: BLE001 - a crashed worker fails its attack, not the run
            exc = getattr(exc, "cause", None) or exc  # a Ray task's own exception, as the process pool reports it
            rows = f"{type(exc).__name__}: {exc}"
        self._write(ident, rows)

    def _write(self, ident: dict, rows: list[Row] | str) -> None:
        """Append the attack's rows, or one ``attack_error`` row when it crashed or timed out (a message)."""
        if isinstance(rows, str):
            rows = [attack_error_row(ident["round"], ident["client"], rows)]
        for row in rows:
            self.folder.append(row)
        ok = [r for r in rows if getattr(r, "ok", False)]
        summary = ", ".join(
            f"{r.method} " + (f"LnAcc {r.label_lnacc:.2f}" if isinstance(r, LabelRow) and r.label_lnacc is not None
                              else f"PSNR {r.psnr:.1f} dB" if isinstance(r, InversionRow) and r.psnr is not None
                              else "ok") for r in ok)
        failed = len(rows) - len(ok)
        log.warning("attacked round %d client %d: %s%s", ident["round"], ident["client"], summary or "-",
                    f" ({failed} failed)" if failed else "")

    def close(self) -> None:
        """Wait for every outstanding attack, then stop the workers."""
        while self.pending:
            self._finish(self.pending.popleft())
        if self.pool is not None:
            if self.stuck:  # do not wait for an attack that already timed out
                for proc in list((getattr(self.pool, "_processes", None) or {}).values()):
                    proc.terminate()
            self.pool.shutdown(wait=not self.stuck, cancel_futures=True)


def _attack_stream(*args) -> Iterator[object]:
    """The Ray task of one attack (``attack_and_score``'s arguments): a first item when a worker starts it
    (``attack.timeout`` counts from there, as with the process pool), then the rows."""
    yield "started"
    yield attack_and_score(*args)


class _WorkerRunner:
    """The attack runner of one lane's worker process: what it keeps between the attacks it runs."""

    def __init__(self) -> None:
        self.calibrations = CalibrationCache()


_runner: _WorkerRunner | None = None  # a lane's worker process: set by the pool's initializer; None elsewhere


def _start_worker() -> None:
    """The lane pool's initializer: this worker process's runner (a fresh cache for each run's pool)."""
    global _runner
    _runner = _WorkerRunner()


def _attack_in_worker(*args):
    """``attack_and_score(*args)`` with this worker's calibration cache (none outside a lane's worker)."""
    return attack_and_score(*args, calibration_cache=_runner.calibrations if _runner is not None else None)


class RoundLanes:
    """``attack.workers`` one-process pools ("lanes"); every attacked update of a round goes to the lane its first
    one took (the lane with the fewest unfinished attacks then), so the worker that calibrated ``ig-shadow`` on the
    round's model serves the round's other updates from its cache. Offers what the scheduler uses of a
    ``ProcessPoolExecutor``: ``submit`` (with the round first), ``_processes``, ``shutdown``."""

    def __init__(self, workers: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.lanes = [ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_start_worker)
                      for _ in range(workers)]
        self.futures: list[list[Future]] = [[] for _ in self.lanes]
        self.round_lane: dict[int, int] = {}

    def lane(self, server_round: int) -> int:
        if server_round not in self.round_lane:
            busy = [sum(not f.done() for f in fs) for fs in self.futures]
            self.round_lane = {server_round: busy.index(min(busy)),  # earlier rounds' lanes are not needed again
                               **{r: i for r, i in self.round_lane.items() if r > server_round - 2}}
        return self.round_lane[server_round]

    def submit(self, server_round: int, fn, *args) -> Future:
        i = self.lane(server_round)
        future = self.lanes[i].submit(fn, *args)
        self.futures[i] = [f for f in self.futures[i] if not f.done()] + [future]
        return future

    @property
    def _processes(self) -> dict:
        return {pid: proc for lane in self.lanes for pid, proc in (getattr(lane, "_processes", None) or {}).items()}

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        for lane in self.lanes:
            lane.shutdown(wait=wait, cancel_futures=cancel_futures)


def ray_connection():
    """The Ray this process is connected to: the federation's (Flower's simulation backend initialised it in the
    ServerApp's process), else ``RAY_ADDRESS``'s cluster, else a local Ray (a deployment's ServerApp)."""
    import os

    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or None
        ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    return ray


class RayJob:
    """One attack as a Ray task, with the part of ``concurrent.futures.Future`` the scheduler uses: ``running()``
    (its first streamed item arrived: a worker started it), ``done()``, ``result(timeout)`` (raises
    ``TimeoutError`` like a future; a task's exception as raised in the task, ``RayTaskError.cause``), and
    ``cancel()`` (force-kills the worker of a timed-out attack; always False: the worker was busy)."""

    def __init__(self, gen) -> None:
        self.gen = gen
        self.started = False
        self.rows_ref = None

    @classmethod
    def submit(cls, args: tuple, num_cpus: float, num_gpus: float) -> "RayJob":
        ray = ray_connection()
        task = ray.remote(_attack_stream).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)
        return cls(task.remote(*args))

    def _advance(self, timeout: float) -> bool:
        """Take the next streamed item when it is ready within ``timeout`` s; True once the rows' ref is known."""
        import ray

        while self.rows_ref is None:
            ready, _ = ray.wait([self.gen], timeout=timeout)
            if not ready:
                return False
            ref = next(self.gen)
            if self.started:
                self.rows_ref = ref
            else:
                self.started = True
                ray.get(ref)  # "started" (raises here if the task failed before its first yield)
        return True

    def running(self) -> bool:
        try:
            self._advance(0)
        except Exception:  # noqa: BLE001 - a failed task is done; result() raises its error
            return True
        return self.started

    def done(self) -> bool:
        import ray

        try:
            if not self._advance(0):
                return False
        except Exception:  # noqa: BLE001
            return True
        return bool(ray.wait([self.rows_ref], timeout=0)[0])

    def result(self, timeout: float | None = None):
        import ray
        from ray.exceptions import GetTimeoutError

        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._advance(timeout):
            raise FutureTimeout()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return ray.get(self.rows_ref, timeout=left)
        except GetTimeoutError:
            raise FutureTimeout() from None

    def cancel(self) -> bool:
        import ray

        try:
            ray.cancel(self.gen, force=True)
        except Exception as exc:  # noqa: BLE001 - the task may have ended meanwhile
            log.debug("cancel of a Ray attack task: %s", exc)
        return False
