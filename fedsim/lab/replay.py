"""``fedsim attack RUN_DIR``: re-run attacks on saved captures (e.g. a stronger inversion) and append rows.

Captures load with safetensors only; nothing is unpickled. Uses the run's resolved ``config.toml`` with
``--set attack.key=value`` overrides.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from fedsim.config import load_config, parse_selection
from fedsim.errors import CaptureError, ConfigError, DataError, RunFolderError
from fedsim.evaluation.attacking import attack_and_score, plan_from_config
from fedsim.rows import SkippedRow
from fedsim.runfolder import RunFolder


def replay_attacks(run_dir: Path, overrides: dict[str, Any], quiet: bool = False) -> int:
    """Attack every selected capture of ``run_dir``; returns the number of updates attacked.

    A capture that cannot be read is named on stderr in one line and skipped; the others are attacked, then
    ``DataError`` says how many were unreadable (the CLI exits non-zero: data was lost).
    """
    bad = [k for k in overrides if not k.startswith("attack.") and k != "run.device"]
    if bad:
        raise ConfigError(f"{bad[0]}: fedsim attack only takes attack.* (and run.device) overrides")
    folder = RunFolder(run_dir)
    if not folder.config.is_file():
        raise RunFolderError(f"{run_dir}: not a run folder (no config.toml)")
    cfg = load_config(folder.config, overrides).replace(**{"run.out_dir": str(run_dir.resolve())})
    plan_from_config(cfg)  # a typo in a method name fails here, once, not per capture
    rounds = parse_selection("attack.rounds", cfg.attack.rounds)
    clients = parse_selection("attack.clients", cfg.attack.clients)
    files = list(folder.iter_captures())
    if not files:
        raise ConfigError(f"{run_dir}: no captures found under captures/ (was capture.enabled false?)")
    done, unreadable = 0, []
    for path in files:
        r, c = int(path.parent.name.split("_")[1]), int(path.stem.split("_")[1])
        if (rounds is not None and r not in rounds) or (clients is not None and c not in clients):
            continue
        if cfg.attack.max_attacks and done >= cfg.attack.max_attacks:
            break
        try:
            rows = attack_and_score(path, cfg.to_flat(), run_dir)
        except CaptureError as exc:
            print(f"fedsim: skipped {exc}", file=sys.stderr)
            unreadable.append(path)
            continue
        for row in rows:
            folder.append(dataclasses.replace(row, replay=True))
        done += 1
        if not quiet:
            summary = ", ".join(f"{row.method}:{_outcome(row)}" for row in rows)
            print(f"round {r} client {c}: {summary}")
    if unreadable:
        raise DataError(f"{len(unreadable)} of {len(files)} capture files unreadable (named above); "
                        f"{done} attacked")
    return done


def _outcome(row) -> str:
    """'ok', 'failed', or 'skipped (reason)' for the one-line progress of a replay."""
    if isinstance(row, SkippedRow):
        return f"skipped ({row.reason})"
    return "ok" if row.ok else "failed"
