"""Running a sweep: one federation per (setting, seed), in parallel, cached, then the replayed attacks.

Cache: a run folder ``DIR/<setting>/seed_S`` (:mod:`~.layout`; or, from an older sweep, ``DIR/setting_XX/seed_S``)
whose ``DONE`` file exists (the ServerApp writes it last) and whose ``config.toml`` resolves to the same configuration is not run again; replayed attacks already recorded in its
``metrics.jsonl`` are not replayed again. Re-running a sweep after a crash or with one more seed therefore only
runs what is missing. Delete a folder (or change its config) to run it again.

Where federations run: a local thread pool (``--parallel N``), or with ``Sweep.ray`` (``fedsim sweep --ray``) one
Ray task each on a cluster (:mod:`~.ray_pool`): only the runner changes, so the cache, resume, progress, ``--only``,
replays and reports are the same code. A federation that did not finish (failed after its retries, or lost with its
node) is listed in ``failed``; ``run_sweep`` writes the others' rows and then raises :class:`SweepIncomplete`.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from fedsim.core.config import ExperimentConfig, load_config
from fedsim.core.lists import comma_list
from fedsim.lab.sweep.layout import legacy_folder, run_folder, setting_folders
from fedsim.lab.sweep.progress import Progress, RoundWatcher, SweepEvent, Tracker
from fedsim.lab.sweep.spec import Setting, Sweep
from fedsim.core.runfolder import RunFolder

Runner = Callable[[ExperimentConfig, Path, bool], Path]
log = logging.getLogger("fedsim.sweep")


def default_runner(cfg: ExperimentConfig, out: Path, quiet: bool) -> Path:
    from fedsim.lab.runner import run_federation

    return run_federation(cfg, out, quiet=quiet)


def locate(cfg: ExperimentConfig, out: Path, folders: dict[int, str], setting: Setting, seed: int) -> Path:
    """The run folder of (setting, seed): the named one, or the old layout's ``setting_XX/seed_S`` when that
    holds a finished run of ``cfg`` (used in place); an old folder that does not is left alone, with a warning."""
    run = run_folder(out, folders, setting, seed)
    old = legacy_folder(out, setting, seed)
    if cached(cfg, run) or not old.exists():
        return run
    if cached(cfg, old):
        log.info("cached (old layout, used in place): %s", old)
        return old
    log.warning("%s (old layout) holds no finished run of this config: a new run goes to %s", old, run)
    return run


#: keys that say where a federation's attacks run, not what they compute (tests/test_ray_cluster.py: the rows of
#: attacks as Ray tasks equal the process pool's): a run finished with another value is the same run
WHERE_IT_RAN = ("attack.backend", "attack.num_cpus", "attack.num_gpus")


def cached(cfg: ExperimentConfig, run: Path) -> bool:
    """True when ``run`` holds a finished federation of exactly ``cfg`` (run.out_dir and :data:`WHERE_IT_RAN`
    aside)."""
    folder = RunFolder(run)
    if not (folder.done.exists() and folder.config.exists()):
        return False
    try:
        done = load_config(folder.config)
    except Exception:  # noqa: BLE001 - an unreadable or outdated config is a cache miss, not an error
        return False
    want, have = ({k: v for k, v in c.replace(**{"run.out_dir": str(run.resolve())}).to_flat().items()
                   if k not in WHERE_IT_RAN} for c in (cfg, done))
    return want == have


def replayed(run: Path, cfg: ExperimentConfig | None = None) -> set[str]:
    """Replayed methods whose rows cover every capture the attack selects (``attack.rounds``, ``attack.clients``,
    ``attack.max_attacks``, as ``fedsim attack`` selects them); a replay cut short is redone."""
    from fedsim.lab.replay import replayed_methods

    return replayed_methods(RunFolder(run), cfg)


def replay(run: Path, cfg: ExperimentConfig, methods: tuple[str, ...]) -> None:
    """Replay the extra inversion methods on the run's captures (``fedsim attack``), once each: a resumed sweep
    attacks only the captures a method has no replay row for yet. A replay that loses data (unreadable
    captures, crashed attacks: recorded as rows) is logged and the sweep goes on."""
    from fedsim.core.errors import FedsimError
    from fedsim.lab.replay import replay_attacks

    if not RunFolder(run).capture_list():
        log.warning("%s: no captures to replay %s on", run, ", ".join(methods))
        return
    first_label = next(iter(comma_list(cfg.attack.label_methods)), "ilrg")
    for method in methods:
        if method in replayed(run, cfg):
            continue
        try:
            replay_attacks(run, {"attack.inversion": method, "attack.label_methods": first_label}, quiet=True,
                           resume=True)
        except FedsimError as exc:
            log.warning("%s: replay of %s: %s", run, method, exc)


def write_run_report(run: Path) -> None:
    try:
        from fedsim.lab.report import write_report

        write_report(run)
    except Exception as exc:  # noqa: BLE001 - a report problem must not lose the sweep's measurements
        log.warning("report of %s failed: %s", run, exc)


def _run_with_retry(runner: Runner, cfg: ExperimentConfig, run: Path, quiet: bool, retries: int) -> Path | None:
    """A federation that fails (e.g. Ray's node start timing out on an overloaded machine) is run again up to
    ``retries`` times; then it is left out of the summary with a warning, and the other runs go on. One lost with
    its cluster node (``FederationLost``) is not retried: the node may be going down; a rerun of the sweep runs it."""
    from fedsim.core.errors import FederationFailed
    from fedsim.lab.sweep.ray_pool import FederationLost

    for attempt in range(retries + 1):
        try:
            return Path(runner(cfg, run, quiet))
        except FederationLost as exc:
            log.error("run %s lost: %s", run, str(exc).splitlines()[0])
            return None
        except FederationFailed as exc:
            log.warning("run %s failed (attempt %d of %d): %s", run, attempt + 1, retries + 1,
                        str(exc).splitlines()[0])
    return None


def execute(sweep: Sweep, out: Path, runner: Runner, parallel: int, quiet: bool,
            reports: bool = True, existing_only: bool = False, retries: int = 2,
            only: set[int] | None = None, progress: Progress | None = None,
            failed: list[str] | None = None) -> dict[tuple[int, int], Path]:
    """Run every (setting, seed) not cached; returns their run folders. ``existing_only``: run nothing, use the
    finished (cached) runs only (a partial sweep's summary). ``progress``: called with a
    :class:`~fedsim.lab.sweep.progress.SweepEvent` per step of every job (start, rounds, done / cached / ...).
    ``failed``: gets one line per federation that did not finish. With ``sweep.ray`` the federations not cached run
    as Ray tasks (``parallel`` is then the cluster's: every job is submitted, Ray places them)."""
    jobs = [(s, seed) for seed in sweep.seeds for s in sweep.settings  # seed-major: whole seeds finish first
            if only is None or s.index in only]
    folders = setting_folders(sweep)
    pool = None
    if sweep.ray is not None and not existing_only and any(
            not cached(sweep.config(s, seed), locate(sweep.config(s, seed), out, folders, s, seed))
            for s, seed in jobs):
        from fedsim.lab.sweep.ray_pool import RayPool

        a = sweep.base.attack
        pool = RayPool.connect(sweep.ray, out, a.num_gpus if a.enabled and a.backend == "ray" else 0.0)
        runner, parallel = pool.wrap(runner), max(1, len(jobs))
    try:
        return _execute(sweep, out, runner, parallel, quiet, reports, existing_only, retries, jobs, folders,
                        progress, failed, pool.capacity if pool is not None else parallel)
    finally:
        if pool is not None:
            pool.close()


def _execute(sweep: Sweep, out: Path, runner: Runner, parallel: int, quiet: bool, reports: bool,
             existing_only: bool, retries: int, jobs: list[tuple[Setting, int]], folders: dict[int, str],
             progress: Progress | None, failed: list[str] | None, capacity: int) -> dict[tuple[int, int], Path]:
    prior_needed = any(m in ("ggl", "gias") for s in sweep.settings for m in s.replay)
    # the shared generative prior trains while the first federations run; replays wait for it
    prior = threading.Thread(target=ensure_prior, args=(sweep.base,), daemon=True)
    if prior_needed and not existing_only:
        prior.start()
    tracker = Tracker(len(jobs), capacity, progress)

    def one(k: int, job: tuple[Setting, int]) -> Path | None:
        setting, seed = job
        cfg = sweep.config(setting, seed)
        run = locate(cfg, out, folders, setting, seed)
        ev = SweepEvent("start", k, len(jobs), setting.label, seed, str(run), rounds=cfg.run.num_rounds)
        t0 = time.monotonic()
        if cached(cfg, run):
            log.info("cached: %s", run)
            kind = "cached"
        elif existing_only:
            tracker.emit(replace(ev, kind="missing"))
            return None
        else:
            tracker.emit(ev)
            with RoundWatcher(tracker, ev, run):
                done = _run_with_retry(runner, cfg, run, quiet, retries)
            if done is None:
                if failed is not None:
                    failed.append(f"{setting.label!r} seed {seed} ({run})")
                tracker.emit(replace(ev, kind="failed", seconds=time.monotonic() - t0))
                return None
            run, kind = done, "done"
        if setting.replay:
            tracker.emit(replace(ev, kind="replay"))
            if prior.is_alive():
                prior.join()
            replay(run, cfg.replace(**{"run.out_dir": str(run.resolve())}), setting.replay)
        if reports and not RunFolder(run).report.exists():
            write_run_report(run)
        tracker.emit(replace(ev, kind=kind, seconds=time.monotonic() - t0))
        return run

    if parallel > 1:
        with ThreadPoolExecutor(parallel) as pool:
            runs = list(pool.map(one, range(1, len(jobs) + 1), jobs))
    else:
        runs = [one(k, j) for k, j in enumerate(jobs, 1)]
    return {(s.index, seed): run for (s, seed), run in zip(jobs, runs) if run is not None}


def ensure_prior(base: ExperimentConfig) -> None:
    """Train the generative prior once before parallel runs share it (``attack.prior_path``), when asked to and
    the file is missing or stale (trained with other settings than ``train_prior``'s current ones)."""
    from fedsim.attacks.generative import arch_prior_path, parse_archs, stale_reasons, train_prior

    a = base.attack
    if not (a.prior_path and a.prior_autotrain):
        return
    for arch in parse_archs(a.prior_archs):  # one file per decoder the attacks try (attack.prior_archs)
        path = arch_prior_path(a.prior_path, arch)
        if path.exists() and not stale_reasons(path, arch=arch):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        train_prior(dataset=base.data.dataset, path=path, arch=arch)  # the public half of the test split


def per_seed_rows(sweep: Sweep, runs: dict[tuple[int, int], Path]) -> dict[int, list[dict[str, Any]]]:
    from fedsim.lab.sweep.summary import summarize

    out: dict[int, list[dict[str, Any]]] = {}
    for s in sweep.settings:
        out[s.index] = []
        for seed in sweep.seeds:
            if (s.index, seed) not in runs:
                continue
            run = runs[(s.index, seed)]
            row = {"seed": seed, "run": str(run)}
            row.update(summarize(run, sweep.config(s, seed), sweep.delta))
            out[s.index].append(row)
    return out
