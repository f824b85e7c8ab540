"""The ``fedsim`` command line.

    fedsim run CONFIG_OR_PRESET [--out DIR] [--set section.key=value ...] [--quiet] [--overwrite]
    fedsim deploy-local CONFIG --nodes N --out DIR [--set section.key=value ...] [--overwrite]
    fedsim demo [--out DIR]               (replaces its own previous run)
    fedsim attack RUN_DIR [--set attack.key=value ...]
    fedsim report RUN_DIR
    fedsim sweep SWEEP.toml --out DIR [--parallel N] [--set section.key=value ...]
    fedsim check CONFIG_OR_SWEEP [--set section.key=value ...] [--format text|json]
    fedsim list [attacks|labels|inversion|datasets|models|defenses|presets] [--format text|json]
    fedsim init DIR [--force]             (copies the packaged presets into DIR for editing)
    fedsim track RUN_DIR [--backend tensorboard|mlflow] [--to DIR_OR_URI]
    fedsim --version
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from fedsim.core.config import load_config, parse_overrides
from fedsim.core.errors import ConfigError, FedsimError, RunFolderError
from fedsim.api import check_complete, check_out, check_overwrite, run as api_run  # noqa: F401  (re-exported)
from fedsim.core.runfolder import RunFolder

LIST_KINDS = ("attacks", "labels", "inversion", "datasets", "models", "defenses")  # = fedsim.lab.catalog.KINDS
DEMO_PRESET = "demo"  # the packaged preset fedsim demo runs (fedsim.lab.presets)


def _config_path(spec: str) -> str:
    """A config argument as a file: an existing path, else a packaged preset's name (``fedsim.lab.presets``)."""
    from fedsim.lab.presets import resolve

    return str(resolve(spec))


def _cmd_run(args: argparse.Namespace) -> int:
    """``fedsim.api.run`` (config errors come before torch is imported), then the summary lines."""
    result = api_run(args.config, args.out, overrides=parse_overrides(args.set or []), quiet=args.quiet,
                     strict=False, overwrite=args.overwrite)
    _print_summary(result.folder, result.report_path)
    check_complete(RunFolder(result.folder))
    return 0


def _cmd_deploy_local(args: argparse.Namespace) -> int:
    overrides = parse_overrides(args.set or [])
    if args.nodes < 1:
        raise ConfigError(f"--nodes: {args.nodes} is below the minimum 1")
    if "run.num_clients" in overrides and str(overrides["run.num_clients"]) != str(args.nodes):
        raise ConfigError(f"run.num_clients: --set {overrides['run.num_clients']} contradicts --nodes {args.nodes} "
                          "(--nodes decides the federation size)")
    cfg = load_config(_config_path(args.config), overrides)
    cfg = cfg.replace(**{"run.num_clients": args.nodes,  # --nodes decides the federation size
                         "train.min_train_nodes": min(cfg.train.min_train_nodes, args.nodes)})
    from fedsim.core.paths import run_folder
    from fedsim.lab.deploy import deploy_local
    from fedsim.lab.preflight import preflight

    out = run_folder(cfg, args.out, suffix="-deploy")
    check_out(out)
    check_overwrite(out, args.overwrite)
    plan = preflight(cfg, out)
    run = deploy_local(cfg, args.nodes, out, quiet=args.quiet, plan=plan)
    _after_run(run, args.quiet)
    return 0


def _after_run(run: Path, quiet: bool) -> None:
    from fedsim.lab.report import write_report

    _print_summary(run, write_report(run))
    check_complete(RunFolder(run))


def _print_summary(run: Path, report: Path) -> None:
    """A few lines: utility, attacked updates, leakage per method beside chance, where the report is; then a
    re-identification rate above its DP bound beyond its interval raises ``BoundViolation`` (exit 1, one line:
    a calibration bug; the folder and report are kept)."""
    from fedsim.lab.run_summary import check_bounds, summary_lines

    print("\n".join(summary_lines(run, report)))
    check_bounds(run)


def _cmd_demo(args: argparse.Namespace) -> int:
    from fedsim.lab.presets import find

    args.config = str(find(DEMO_PRESET))  # the packaged file, even where ./demo exists
    args.set = args.set or []
    args.overwrite = True  # by design: the demo re-runs into its own folder (`make demo` twice); see README
    return _cmd_run(args)


def _cmd_attack(args: argparse.Namespace) -> int:
    """Replay, then end as ``fedsim run`` ends: report.html rewritten and the summary (replayed methods marked),
    also when some attacks failed (their rows are in; the one-line error and exit code follow)."""
    from fedsim.api import attack
    from fedsim.core.errors import AttackError, DataError

    run = Path(args.run_dir)
    try:
        attack(run, overrides=parse_overrides(args.set or []), quiet=args.quiet, report=False)
    except (AttackError, DataError) as exc:  # raised after every other capture was attacked
        if not isinstance(exc, RunFolderError) and RunFolder(run).metrics.is_file():
            _after_replay(run)
        raise
    _after_replay(run)
    return 0


def _after_replay(run: Path) -> None:
    from fedsim.lab.report import write_report

    _print_summary(run, write_report(run))


def _cmd_track(args: argparse.Namespace) -> int:
    from fedsim.lab.tracking import export

    run = Path(args.run_dir)
    if not run.is_dir():
        raise RunFolderError(f"{run}: no such run folder")
    print(export(run, args.backend, target=args.to).line())
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from fedsim.lab.report import write_report

    run = Path(args.run_dir)
    if not run.is_dir():
        raise RunFolderError(f"{run}: no such run folder")
    if not (RunFolder(run).config.is_file() or RunFolder(run).metrics.is_file()):
        from fedsim.lab.sweep import is_sweep_folder, summarize_folder

        if is_sweep_folder(run):  # a sweep folder: its sweep.html, as fedsim sweep --summarize-only writes it
            print(summarize_folder(run))
            return 0
        raise RunFolderError(f"{run}: not a run folder (no config.toml or metrics.jsonl) nor a sweep folder "
                             "(no sweep.jsonl)")
    print(write_report(run))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from fedsim.lab.sweep import load_sweep, run_sweep

    if args.parallel < 1:
        raise ConfigError(f"--parallel: {args.parallel} is below the minimum 1")
    args.sweep = _config_path(args.sweep)
    sweep = load_sweep(args.sweep, parse_overrides(args.set or []), args.ray)  # sweep-file errors before torch
    from fedsim.lab.sweep.layout import select

    only = select(sweep, args.only) if args.only else None
    if not args.summarize_only:
        from fedsim.lab.preflight import preflight

        for setting in sweep.settings:  # every setting can run, before the first one starts
            if only is None or setting.index in only:
                preflight(sweep.config(setting, sweep.seeds[0]))

    from contextlib import nullcontext

    from fedsim.lab.sweep import RichProgress

    with (nullcontext() if args.quiet or args.summarize_only else RichProgress()) as progress:
        rows = run_sweep(args.sweep, args.out, parallel=args.parallel, overrides=parse_overrides(args.set or []),
                         quiet=True, progress=progress, only=only, existing_only=args.summarize_only, ray=args.ray)
    from fedsim.lab.terminal import sweep_line

    for r in rows if not args.quiet else ():
        print(sweep_line(r))  # numbers rounded (fedsim.lab.terminal)
    print(f"results: {Path(args.out) / 'sweep.jsonl'}, {Path(args.out) / 'sweep.html'}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """The verdict first, then what will run with its time and disk estimates (``fedsim.lab.check_output``); exit
    0 when it can run, 2 with the one-line error otherwise (any ``FedsimError``); a sweep file (a ``[sweep]``
    table) is checked setting by setting."""
    from fedsim.lab.check_output import check_command

    return check_command(args.config, args.set or [], args.format, args.full)


def _cmd_list(args: argparse.Namespace) -> int:
    """The registries, after the plugins a run would load: the ``fedsim.attacks`` entry points of installed
    packages, the ``attack.plugins`` of ``--config`` and the modules of ``--plugins``."""
    if args.what == "presets":
        from fedsim.lab.presets import render as render_presets

        print(render_presets(args.format))
        return 0
    from fedsim.attacks.plugins import load_plugins
    from fedsim.lab.catalog import render

    modules = [args.plugins] if args.plugins else []
    if args.config:
        modules.append(load_config(_config_path(args.config)).attack.plugins)
    load_plugins(",".join(modules))
    print(render(args.what, args.format))
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    """Copy the packaged presets into ``args.dir`` (refuses to overwrite a preset file there without --force)."""
    from fedsim.lab.presets import copy_out

    written = copy_out(args.dir, force=args.force)
    example = next((p for p in written if p.stem == "smoke"), written[0])
    print(f"{len(written)} presets copied to {Path(args.dir)}; edit one and run it: fedsim run {example}")
    return 0


def package_version() -> str:
    """The installed distribution's version (``importlib.metadata``), else ``fedsim.__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fedsim")
    except PackageNotFoundError:
        import fedsim

        return fedsim.__version__


def build_parser() -> argparse.ArgumentParser:
    from fedsim.lab.cli_parser import SuggestingParser  # argparse's, with "did you mean" on an invalid choice

    parser = SuggestingParser(prog="fedsim", description="Privacy leakage testbed for federated learning")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                        help="print the installed fedsim version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a simulated federation (Flower simulation engine, Ray backend)")
    run.add_argument("config", help="a config TOML, or a packaged preset's name, e.g. smoke (fedsim list presets)")
    run.add_argument("--out", help="run folder (default run.out_dir, else runs/<run.name> in the current folder)")
    run.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value")
    run.add_argument("--quiet", action="store_true", help="no progress bar (CI)")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the previous run in the run folder (without it such a folder is refused)")
    run.set_defaults(func=_cmd_run)
    dep = sub.add_parser("deploy-local", help="run as a real deployment: SuperLink + N SuperNodes on 127.0.0.1")
    dep.add_argument("config", help="a config TOML or a preset's name, e.g. smoke (run.num_clients is set by --nodes)")
    dep.add_argument("--nodes", type=int, required=True, help="SuperNodes to start (sets run.num_clients)")
    dep.add_argument("--out", help="run folder (default runs/<run.name>-deploy)")
    dep.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value")
    dep.add_argument("--quiet", action="store_true", help="no progress bar (CI)")
    dep.add_argument("--overwrite", action="store_true",
                     help="replace the previous run in the run folder (without it such a folder is refused)")
    dep.set_defaults(func=_cmd_deploy_local)
    demo = sub.add_parser("demo", help="run the packaged demo preset (replaces the previous demo run in --out)")
    demo.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    demo.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                      help="override a value of the demo preset (repeatable)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar (CI)")
    demo.set_defaults(func=_cmd_demo)
    attack = sub.add_parser("attack", help="re-run attacks on the captures of a finished run, then rewrite its "
                            "report.html and print the summary (replayed methods marked)")
    attack.add_argument("run_dir", help="a finished run folder with captures/, e.g. runs/demo")
    attack.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override an attack.* key (or run.device) of the run's config, e.g. "
                        "attack.inversion=ig (repeatable)")
    attack.add_argument("--quiet", action="store_true",
                        help="no line per attacked capture (failures still go to stderr)")
    attack.set_defaults(func=_cmd_attack)
    sweep = sub.add_parser("sweep", help="one federation per defense setting and seed of a sweep file "
                           "(fedsim/lab/sweep/)")
    sweep.add_argument("sweep", help="sweep TOML or a packaged sweep's name, e.g. sweep_dp")
    sweep.add_argument("--out", required=True, help="folder for sweep.jsonl, plots, sweep.html, run folders")
    sweep.add_argument("--parallel", type=int, default=1, help="federations at once (default 1)")
    sweep.add_argument("--ray", metavar="auto|HOST:PORT", help="run each federation as a Ray task on this cluster "
                       "(--out on storage every node sees; [sweep.ray] in the sweep file: the task's resources; "
                       "docs/deployment.md)")
    sweep.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override the base config")
    sweep.add_argument("--quiet", action="store_true",
                       help="no progress display (run k of N, setting, seed, round, ETA) and no summary lines")
    pick = sweep.add_mutually_exclusive_group()
    pick.add_argument("--only", action="append", metavar="LABEL_OR_INDEX",
                      help="run only this setting (its index in sweep.jsonl, its label or its folder name; "
                      "repeatable); the others are summarised from the runs they already have")
    pick.add_argument("--summarize-only", action="store_true",
                      help="run nothing: rebuild sweep.jsonl, the plots and sweep.html from the finished runs "
                      "already in --out")
    sweep.set_defaults(func=_cmd_sweep)
    report = sub.add_parser("report", help="write report.html for a run folder (sweep.html for a sweep folder)")
    report.add_argument("run_dir", help="a run folder (config.toml or metrics.jsonl): writes run_dir/report.html; "
                        "or a fedsim sweep --out folder: rebuilds its sweep.jsonl, plots and sweep.html")
    report.set_defaults(func=_cmd_report)
    _add_inspection_commands(sub)
    return parser


def _add_inspection_commands(sub: argparse._SubParsersAction) -> None:
    """``check``, ``list`` and ``track``: the commands that read a config, the registries or a finished run."""
    chk = sub.add_parser("check", help="validate a config without starting Flower: valid/invalid first, then "
                         "what will run (clients x rounds, attacked updates, methods), estimated time and disk, the "
                         "keys set away from the defaults, the code it imports; exit 0 valid, 2 invalid")
    chk.add_argument("config", help="a config TOML or a preset's name, e.g. smoke, or a sweep file (every "
                     "federation it would start is checked), e.g. sweep_dp")
    chk.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value")
    chk.add_argument("--format", choices=("text", "json"), default="text",
                     help="text: the verdict, what will run, time and disk estimates, the keys set away from the "
                     "defaults; json: {valid, config, preflight, disk_estimate, time_estimate} or {valid, error}")
    chk.add_argument("--full", action="store_true", help="text: also print the full resolved config (TOML)")
    chk.set_defaults(func=_cmd_check)
    listing = sub.add_parser("list", help="attacks, label methods, inversion methods, datasets, models and "
                             "defense tables, each with its one-line summary and paper; or the packaged presets")
    listing.add_argument("what", nargs="?", default="all", choices=("all", *LIST_KINDS, "presets"),
                         help="what to list (default all; attacks = labels + inversion; presets: the configs "
                         "fedsim ships, by name)")
    listing.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    listing.add_argument("--plugins", default="", metavar="MODULES",
                         help="also import these attack plugin modules first (comma-separated, as attack.plugins)")
    listing.add_argument("--config", default=None, metavar="CONFIG",
                         help="also load the attack.plugins of this config first")
    listing.set_defaults(func=_cmd_list)
    init = sub.add_parser("init", help="copy the packaged presets into a folder, to edit and run them")
    init.add_argument("dir", help="folder to copy the presets into (created)")
    init.add_argument("--force", action="store_true", help="overwrite preset files already in the folder")
    init.set_defaults(func=_cmd_init)
    track = sub.add_parser("track", help="export a finished run's utility and attack scalars and reconstruction "
                           "grids to TensorBoard or MLflow (the optional 'tracking' extra)")
    track.add_argument("run_dir", help="a finished run folder (metrics.jsonl), e.g. runs/demo")
    track.add_argument("--backend", choices=("tensorboard", "mlflow"), default=None,
                       help="where to export (default: the run's tracking.backend)")
    track.add_argument("--to", default=None, metavar="DIR_OR_URI",
                       help="TensorBoard log folder or MLflow tracking URI (default: tracking.dir / tracking.uri, "
                       "else <run>/tensorboard or file:<run>/mlruns)")
    track.set_defaults(func=_cmd_track)
    from fedsim.lab.data_get import add_parser as add_data_parser  # `fedsim data get` (no torch at parse time)

    add_data_parser(sub)


def _terminate(signum, frame) -> None:  # noqa: ARG001
    raise KeyboardInterrupt  # runs the cleanup that stops every process we started


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except FedsimError as exc:  # one line for the user, exit code by error type (see fedsim/core/errors.py)
        label = "config error: " if isinstance(exc, ConfigError) else ""
        print(f"fedsim: {label}{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fedsim: interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fedsim list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
