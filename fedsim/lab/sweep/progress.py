"""A sweep you can follow: progress events (run k of N, setting, seed, round, ETA) and their display.

:func:`~fedsim.lab.sweep.execute.execute` reports one :class:`SweepEvent` per step of every (setting, seed) job to
a callback: ``start`` (a federation starts), ``round`` (its latest aggregated round, read from the run folder's
utility rows as ``fedsim run``'s progress bar reads them, :mod:`fedsim.lab.runner`), ``replay`` (extra attacks
replayed on its captures), then one of ``done`` / ``cached`` (finished earlier, not run again) / ``failed`` /
``missing`` (``--summarize-only``: no finished run). :class:`RichProgress` draws them with ``rich.progress``
(an overall bar with the ETA, one bar per running federation, a line per finished run).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from fedsim.core.rows import UtilityRow
from fedsim.core.runfolder import RunFolder

FINAL = ("done", "cached", "failed", "missing")


@dataclass(frozen=True)
class SweepEvent:
    kind: str  # start | round | replay | done | cached | failed | missing
    k: int  # this job's place in the sweep, 1..n (seed-major order, the order jobs start in)
    n: int
    label: str
    seed: int
    folder: str
    round: int | None = None  # latest aggregated round (round events)
    rounds: int | None = None  # the run's run.num_rounds
    seconds: float | None = None  # the job's wall time (final events)
    eta_s: float | None = None  # seconds left for the whole sweep, from the mean time of the runs done so far
    finished: int = 0  # jobs finished (any final kind) including this one


Progress = Callable[[SweepEvent], None]


class Tracker:
    """Thread-safe event source for one sweep: counts finished jobs and estimates the time left."""

    def __init__(self, n: int, parallel: int, callback: Progress | None) -> None:
        self.n, self.parallel, self.callback = n, max(1, parallel), callback
        self.finished = 0
        self.ran: list[float] = []  # wall times of the federations that ran (cached ones cost nothing)
        self.lock = threading.Lock()

    def eta(self) -> float | None:
        if self.finished >= self.n:
            return 0.0
        if not self.ran:
            return None
        left = self.n - self.finished
        return sum(self.ran) / len(self.ran) * left / self.parallel

    def emit(self, event: SweepEvent) -> None:
        if self.callback is None:
            return
        with self.lock:
            if event.kind in FINAL:
                self.finished += 1
                if event.kind == "done" and event.seconds is not None:
                    self.ran.append(event.seconds)
            event = replace(event, eta_s=self.eta(), finished=self.finished)
            self.callback(event)


def current_round(run: Path, since: float) -> int | None:
    """The latest aggregated round of a run folder whose metrics were written after ``since`` (a folder of an
    earlier run is cleared by the runner first: its old rows do not count)."""
    folder = RunFolder(run)
    try:
        if not folder.metrics.exists() or folder.metrics.stat().st_mtime < since:
            return None
    except OSError:
        return None
    rounds = [r.round for r in folder.rows(UtilityRow) if isinstance(r.round, int) and r.round > 0]
    return max(rounds) if rounds else None


class RoundWatcher:
    """While a federation runs, polls its run folder and emits a ``round`` event whenever a round is added."""

    def __init__(self, tracker: Tracker, base: SweepEvent, run: Path, poll_s: float = 1.0) -> None:
        self.tracker, self.base, self.run, self.poll_s = tracker, base, run, poll_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.t0 = time.time()

    def _loop(self) -> None:
        last = None
        while not self.stop.wait(self.poll_s):
            rnd = current_round(self.run, self.t0 - 1.0)
            if rnd is not None and rnd != last:
                last = rnd
                self.tracker.emit(replace(self.base, kind="round", round=rnd))

    def __enter__(self) -> "RoundWatcher":
        if self.tracker.callback is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def event_line(ev: SweepEvent) -> str:
    """One line per event: ``[3/12] done  DP-SGD sigma 0.5, clip 1  seed 0  (4m10s; ETA 37m30s)``."""
    head = f"[{ev.k}/{ev.n}] {ev.kind:<7} {ev.label}  seed {ev.seed}"
    if ev.kind == "round":
        return f"{head}  round {ev.round}/{ev.rounds or '?'}"
    if ev.kind in FINAL:
        took = f"{fmt_seconds(ev.seconds)}; " if ev.kind == "done" else ""
        return f"{head}  ({took}{ev.finished}/{ev.n} finished, ETA {fmt_seconds(ev.eta_s)})"
    return head


class RichProgress:
    """The ``fedsim sweep`` display: an overall bar (runs finished of N, ETA), one bar of rounds per running
    federation, and a line per finished run above them. Use as a context manager and pass it as the callback."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TextColumn("{task.fields[status]}"), TimeElapsedColumn())
        self.total = self.bar.add_task("[bold]sweep runs", total=None, status="ETA ?")
        self.tasks: dict[int, int] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> "RichProgress":
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def __call__(self, ev: SweepEvent) -> None:
        from rich.markup import escape

        with self.lock:
            self.bar.update(self.total, total=ev.n)
            task = self.tasks.get(ev.k)
            if ev.kind == "start" and task is None:
                self.tasks[ev.k] = self.bar.add_task(escape(f"{ev.k}/{ev.n} {ev.label} · seed {ev.seed}"),
                                                     total=ev.rounds, status="starting Flower...")
            elif ev.kind == "round" and task is not None:
                last = ev.rounds is not None and ev.round is not None and ev.round >= ev.rounds
                self.bar.update(task, completed=ev.round,
                                status=f"round {ev.round}" + (" · attacks, report" if last else ""))
            elif ev.kind == "replay" and task is not None:
                self.bar.update(task, status="replaying attacks")
            elif ev.kind in FINAL:
                if task is not None:
                    self.bar.remove_task(self.tasks.pop(ev.k))
                self.bar.update(self.total, completed=ev.finished, status=f"ETA {fmt_seconds(ev.eta_s)}")
                if ev.kind != "missing":
                    self.bar.console.print(event_line(ev), markup=False, highlight=False)
