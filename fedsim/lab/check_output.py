"""``fedsim check CONFIG_OR_SWEEP``'s output: the verdict first (``valid: ...`` / ``invalid: ...``, one line), then
what will run and its estimates (``fedsim.lab.check_plan``: clients x rounds, attacked updates, methods, time;
``fedsim.lab.check``: disk), the keys that differ from the defaults, the code the config imports, and the full
resolved TOML only with ``--full``. A sweep file: the number of runs, each setting, the disk and time estimates.
Invalid: the verdict on stdout, the one-line error on stderr (exit 2), nothing else."""

from __future__ import annotations

import json
import sys
from typing import Any

from fedsim.core.errors import ConfigError, FedsimError


def _time_line(fn, *args) -> tuple[str, Any]:
    """An estimate never turns a valid config into a failure: it says why it has no number instead."""
    try:
        value = fn(*args)
    except Exception as exc:  # noqa: BLE001
        return f"time (estimate): none ({type(exc).__name__}: {exc})", None
    return "", value


def check_command(spec: str, sets: list[str], fmt: str = "text", full: bool = False) -> int:
    """Print the check of ``spec`` (a path or a preset's name) with the ``--set`` strings ``sets``; 0 valid, 2
    invalid (any ``FedsimError``)."""
    from fedsim.core.config import load_config, parse_overrides
    from fedsim.lab.check import check, code_lines, is_sweep_file, render, render_sweep
    from fedsim.lab.presets import resolve

    code: list[str] = []
    try:
        overrides = parse_overrides(sets)
        path = str(resolve(spec))
        code = code_lines(path, overrides)
        if is_sweep_file(path):  # a sweep file: every federation it would start is checked
            result, seconds = _check_sweep(path, overrides)
            return _sweep(spec, result, seconds, render_sweep(result, fmt, code), fmt, code)
        cfg = load_config(path, overrides)
        disk = check(cfg)
    except FedsimError as exc:
        label = "config error: " if isinstance(exc, ConfigError) else ""
        if fmt == "json":
            print(json.dumps({"valid": False, "error": str(exc), "error_type": type(exc).__name__, "code": code}))
        else:
            print(f"invalid: {spec} (exit 2; the error below)", flush=True)
            print("\n".join(f"# {line}" for line in code), flush=True)
        print(f"fedsim: {label}{exc}", file=sys.stderr)
        return 2
    from fedsim.lab.check_plan import estimate_time, plan_lines

    if fmt == "json":
        doc = json.loads(render(cfg, disk, fmt, code))
        _, est = _time_line(estimate_time, cfg)
        doc["time_estimate"] = None if est is None else {
            "seconds": round(est.wall_s), "start_s": est.start_s, "training_s": round(est.training_s, 1),
            "attacked_updates": est.attacks, "seconds_per_attack": round(est.attack_s, 1),
            "model": "fedsim/lab/check_plan.py", "estimate": True}
        print(json.dumps(doc, indent=2))
        return 0
    lines = [f"valid: {spec} can run (preflight ok)"]
    failed, lines_plan = _time_line(plan_lines, cfg, disk.line())
    lines += lines_plan if lines_plan is not None else [failed, disk.line()]
    lines += [f"# {line}" for line in code]
    if full:
        from fedsim.core.config import to_toml

        lines += ["# resolved config:", to_toml(cfg).rstrip()]
    else:
        lines.append(f"the full resolved config: fedsim check {spec} --full")
    print("\n".join(lines))
    return 0


def _check_sweep(path: str, overrides: dict[str, Any]) -> tuple[Any, float | None]:
    """``fedsim.lab.check.check_sweep`` (the preflight of every (setting, seed) federation, the first failure
    naming its setting) with each federation's time estimate, from one load of the sweep file."""
    from fedsim.lab.check import SettingCheck, SweepCheck, check
    from fedsim.lab.check_plan import federation_seconds
    from fedsim.lab.sweep.spec import load_sweep

    sweep = load_sweep(path, overrides)
    rows, seconds = [], 0.0
    for s in sweep.settings:
        disks = []
        for seed in sweep.seeds:
            cfg = sweep.config(s, seed)
            try:
                disks.append(check(cfg))
            except FedsimError as exc:
                raise type(exc)(f"setting {s.index} ({s.label}), seed {seed}: {exc}") from exc
            _, timed = _time_line(federation_seconds, cfg, s.replay)
            seconds = None if timed is None or seconds is None else seconds + timed
        rows.append(SettingCheck(s.index, s.label, s.replay, tuple(disks)))
    return SweepCheck(sweep.name, sweep.seeds, tuple(rows)), seconds


def _sweep(spec: str, result, seconds: float | None, rendered: str, fmt: str, code: list[str]) -> int:
    from fedsim.lab.check_plan import duration

    if fmt == "json":
        doc = json.loads(rendered)
        doc["time_estimate"] = None if seconds is None else {
            "seconds_parallel_1": round(seconds), "model": "fedsim/lab/check_plan.py", "estimate": True}
        print(json.dumps(doc, indent=2))
        return 0
    runs = result.federations
    time = ("time (estimate): none" if seconds is None else
            f"time (estimate, a simple model: fedsim/lab/check_plan.py): about {duration(seconds)} for the "
            f"{runs} runs at --parallel 1 (about {duration(seconds / 2)} at --parallel 2 on enough cores)")
    lines = [f"valid: {spec} can run: {runs} runs, every one preflighted", *rendered.splitlines(), time]
    lines += [f"# {line}" for line in code]
    print("\n".join(lines))
    return 0
