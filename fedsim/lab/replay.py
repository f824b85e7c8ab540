"""``fedsim attack RUN_DIR``: re-run attacks on saved captures (e.g. a stronger inversion) and append rows.

Captures load with safetensors only; nothing is unpickled. Uses the run's resolved ``config.toml`` with
``--set attack.key=value`` overrides. The captures attacked are those of ``attack.rounds`` x ``attack.clients``,
the first ``attack.max_attacks`` of them (``RunFolder.captures_selected``); a selection that matches no capture is
a ``ConfigError`` naming the key and what the run has.

Failures are handled as the live server handles them (``fedsim.server.scheduler``): an attack that crashes is one
``attack_error`` row (``replay: true``) and the next capture is attacked; a capture that cannot be read is named
and skipped. Both are named on stderr as they happen, and the replay ends with one ``FedsimError`` (non-zero
exit) that counts them. An attack that does not apply is a ``skipped`` row: not a failure.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from fedsim.attacks.inversion.calibration import CalibrationCache
from fedsim.core.config import ExperimentConfig, load_config, parse_selection
from fedsim.core.errors import AttackError, CaptureError, ConfigError, DataError, RunFolderError
from fedsim.evaluation.attacking import attack_and_score, attack_error_row, plan_from_config
from fedsim.core.rows import AttackErrorRow, AttackRow, InversionRow, LabelRow, Row, SkippedRow
from fedsim.core.runfolder import Capture, RunFolder


def replay_attacks(run_dir: Path, overrides: dict[str, Any], quiet: bool = False, resume: bool = False) -> int:
    """Attack every selected capture of ``run_dir``; returns the number of captures attacked (failures included).

    ``resume``: leave out the captures that already have a replay row of the replayed inversion method (a sweep
    run again after an interruption appends no duplicate rows). Raises ``DataError`` (unreadable captures) or
    ``AttackError`` (attacks that crashed or failed) after attacking every other capture.
    """
    run_dir = Path(run_dir)
    cfg, folder = _load(run_dir, overrides)
    plan = plan_from_config(cfg)  # a typo in a method name fails here, once, not per capture
    todo = selected_captures(folder, cfg)
    if resume and plan.inversion:
        done = replay_done(folder).get(plan.inversion, set())
        todo = [cap for cap in todo if (cap.round, cap.client) not in done]
    flat = cfg.to_flat()
    calibrations = CalibrationCache()  # this replay's: the captures of one round share ig-shadow's calibration
    attacked, unreadable, failed = 0, 0, 0
    for cap in todo:
        try:
            rows: list[Row] = attack_and_score(cap.path, flat, run_dir, plan, calibration_cache=calibrations)
        except CaptureError as exc:
            print(f"fedsim: skipped {exc}", file=sys.stderr)
            unreadable += 1
            continue
        except Exception as exc:  # noqa: BLE001 - as in the live server: a crashed attack fails itself, not the rest
            rows = [attack_error_row(cap.round, cap.client, exc, method=plan.inversion)]
        rows = [dataclasses.replace(row, replay=True) for row in rows]
        for row in rows:
            folder.append(row)
        attacked += 1
        bad = [r for r in rows if isinstance(r, (AttackRow, AttackErrorRow)) and not r.ok]
        if bad:
            failed += 1
            print(f"fedsim: attack failed on round {cap.round} client {cap.client}: "
                  + "; ".join(f"{r.method or 'attack'}: {r.error}" for r in bad), file=sys.stderr)
        if not quiet:
            print(f"round {cap.round} client {cap.client}: " + ", ".join(_outcome(r) for r in rows))
    _raise_for_failures(len(todo), attacked, unreadable, failed)
    return attacked


def _load(run_dir: Path, overrides: dict[str, Any]) -> tuple[ExperimentConfig, RunFolder]:
    bad = [k for k in overrides if not k.startswith("attack.") and k != "run.device"]
    if bad:
        raise ConfigError(f"{bad[0]}: fedsim attack only takes attack.* (and run.device) overrides")
    folder = RunFolder(run_dir)
    if not folder.config.is_file():
        raise RunFolderError(f"{run_dir}: not a run folder (no config.toml)")
    cfg = load_config(folder.config, overrides)  # the one check of this process (issue 34)
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(run_dir.resolve())))
    return cfg, folder


def _raise_for_failures(selected: int, attacked: int, unreadable: int, failed: int) -> None:
    """One line counting what was lost: unreadable captures (``DataError``), failed attacks (``AttackError``)."""
    parts = []
    if unreadable:
        parts.append(f"{unreadable} of {selected} capture files unreadable (named above)")
    if failed:
        parts.append(f"{failed} of {attacked} attacks failed (attack_error / ok: false rows in metrics.jsonl)")
    if not parts:
        return
    ok = attacked - failed
    message = "; ".join(parts) + f"; {ok} attacked"
    raise DataError(message) if unreadable else AttackError(message)


def _selection(folder: RunFolder, cfg: ExperimentConfig | None) -> list[Capture]:
    if cfg is None:
        return folder.capture_list()
    return folder.captures_selected(parse_selection("attack.rounds", cfg.attack.rounds),
                                    parse_selection("attack.clients", cfg.attack.clients), cfg.attack.max_attacks)


def selected_captures(folder: RunFolder, cfg: ExperimentConfig) -> list[Capture]:
    """The captures ``fedsim attack`` attacks; none captured, or none selected, is a one-line ``ConfigError``."""
    every = folder.capture_list()
    if not every:
        raise ConfigError(f"{folder.root}: no captures found under captures/ (was capture.enabled false?)")
    chosen = _selection(folder, cfg)
    if chosen:
        return chosen
    rounds = parse_selection("attack.rounds", cfg.attack.rounds)
    clients = parse_selection("attack.clients", cfg.attack.clients)
    have = (f"rounds {_ranges({c.round for c in every})} and clients {_ranges({c.client for c in every})} "
            f"(only captured updates can be replayed: {_CAPTURED})")
    for key, sel, ids in (("attack.rounds", rounds, {c.round for c in every}),
                          ("attack.clients", clients, {c.client for c in every})):
        if sel is not None and not sel & ids:
            value = getattr(cfg.attack, key.split(".")[1])
            raise ConfigError(f"{key}: {value!r} selects no capture of {folder.root}; it has captures for {have}")
    raise ConfigError(f"attack.rounds, attack.clients: rounds {cfg.attack.rounds!r} x clients "
                      f"{cfg.attack.clients!r} select no capture of {folder.root}; it has captures for {have}, "
                      "none of them in this combination")


#: why a replay finds only some rounds / clients: what the run captured
_CAPTURED = ("a run captures capture.rounds x capture.clients, by default 'attacked', the rounds and clients its "
             "attack.rounds / attack.clients selected; run again with capture.rounds=all and capture.clients=all to "
             "replay any update")


def _ranges(ids: set[int]) -> str:
    """{0, 1, 2, 5} -> '0-2, 5'."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def replay_done(folder: RunFolder) -> dict[str, set[tuple[int, int]]]:
    """Per replayed method, the (round, client) updates a replay already recorded: attacked, found not
    applicable, or crashed (a live skip, e.g. a full queue, is not a replay)."""
    done: dict[str, set[tuple[int, int]]] = {}
    for r in folder.rows():  # one read of metrics.jsonl
        if isinstance(r, (InversionRow, SkippedRow, AttackErrorRow)) and r.replay and r.method:
            done.setdefault(r.method, set()).add((r.round, r.client))
    return done


def replayed_methods(folder: RunFolder, cfg: ExperimentConfig | None = None) -> set[str]:
    """Replayed methods whose rows cover every capture the attack selects (a replay cut short is redone)."""
    wanted = {(c.round, c.client) for c in _selection(folder, cfg)}
    return {m for m, seen in replay_done(folder).items() if wanted <= seen}


def _outcome(row: Row) -> str:
    """A method's score ('ilrg LnAcc 0.95', 'ig PSNR 14.8 dB'; 'ok' without ground truth), 'failed', 'crashed' or
    'skipped (reason)' for the one-line progress of a replay."""
    if isinstance(row, SkippedRow):
        return f"{row.method} skipped ({row.reason})"
    if isinstance(row, AttackErrorRow):
        return f"{row.method or 'attack'} crashed ({row.error})"
    if not row.ok:
        return f"{row.method} failed"
    if isinstance(row, InversionRow) and row.psnr is not None:
        return f"{row.method} PSNR {row.psnr:.1f} dB"
    if isinstance(row, LabelRow) and row.label_lnacc is not None:
        return f"{row.method} LnAcc {row.label_lnacc:.2f}"
    return f"{row.method} ok"
