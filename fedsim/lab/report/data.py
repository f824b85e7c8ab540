"""Reading a run folder for the report through :class:`fedsim.core.runfolder.RunFolder` and typed rows, defensively.

Any file may be missing, empty or cut off mid-line (a run still in progress): lines that are not JSON objects
are skipped and counted, rows of unknown kinds are counted, rows that miss a required field are skipped and
counted, a later attack row (``fedsim attack`` replay) supersedes an earlier one for the same round, client and
method, and nothing is ever unpickled. Field values of a typed row are not type-checked: the renderer still
treats every value as untrusted (``fedsim.lab.report.html``).
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TypeVar

from fedsim.core.rows import (ROW_TYPES, AttackErrorRow, AttackRow, CaptureErrorRow, InversionRow, LabelRow, LostRoundRow,
                         OraclePriorRow, PrivacyRow, RejectionRow, Row, SkippedRow, UtilityRow, row_from_json)
from fedsim.core.runfolder import RunFolder, read_objects

R = TypeVar("R", bound=Row)


@dataclass
class RunData:
    run_dir: Path
    config: dict = field(default_factory=dict)
    config_error: str | None = None
    utility: list[UtilityRow] = field(default_factory=list)
    labels: list[LabelRow] = field(default_factory=list)
    inversions: list[InversionRow] = field(default_factory=list)
    privacy: list[PrivacyRow] = field(default_factory=list)
    attack_errors: list[AttackErrorRow] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)
    lost_rounds: list[LostRoundRow] = field(default_factory=list)
    rejections: list[RejectionRow] = field(default_factory=list)
    capture_errors: list[CaptureErrorRow] = field(default_factory=list)
    oracle_prior: list[OraclePriorRow] = field(default_factory=list)  # ORACLE-PRIOR attack (fedsim.evaluation)
    unknown_kinds: Counter = field(default_factory=Counter)
    malformed: Counter = field(default_factory=Counter)
    bad_lines: dict[str, int] = field(default_factory=dict)
    superseded: int = 0
    num_captures: int = 0
    capture_rounds: int = 0
    num_images: int = 0

    @property
    def attacks(self) -> list[AttackRow]:
        return [*self.labels, *self.inversions]

    @property
    def capped(self) -> list[RejectionRow]:
        """Replies aggregated with a lowered FedAvg weight (``action = "capped"``): in rejections.jsonl, but not
        rejected."""
        return [r for r in self.rejections if r.action == "capped"]

    @property
    def refused(self) -> list[RejectionRow]:
        """Replies the server refused to aggregate (every rejection row that is not a cap)."""
        return [r for r in self.rejections if r.action != "capped"]

    @property
    def failed(self) -> list[AttackRow]:
        """Attack rows that ran but did not succeed (``ok`` is not true)."""
        return [r for r in self.attacks if r.ok is not True]

    @property
    def empty(self) -> bool:
        return not (self.config or self.utility or self.labels or self.inversions or self.privacy
                    or self.attack_errors or self.skipped or self.lost_rounds or self.rejections
                    or self.capture_errors
                    or self.num_captures or self.num_images)


def _key(row: Row) -> tuple[str, str, str]:
    return str(getattr(row, "round", None)), str(getattr(row, "client", None)), str(getattr(row, "method", None))


def latest(rows: Sequence[R]) -> tuple[list[R], int]:
    """One row per (round, client, method): a later row (``fedsim attack`` replay) supersedes an earlier one,
    as its image file has overwritten the earlier one's. Returns the rows kept (in order) and how many went."""
    last: dict[tuple, int] = {}
    for i, r in enumerate(rows):
        last[_key(r)] = i
    keep = sorted(last.values())
    return [rows[i] for i in keep], len(rows) - len(keep)


def _errors_still_standing(errors: list[AttackErrorRow], attacks: list[tuple[int, AttackRow]],
                           positions: dict[int, int]) -> tuple[list[AttackErrorRow], int]:
    """An attack error is superseded by a later attack row for the same round and client (and method, when
    the error names one): a replay that succeeded."""
    keep = []
    for err in errors:
        pos = positions[id(err)]
        later = any(p > pos and a.round == err.round and a.client == err.client
                    and (err.method is None or a.method == err.method) for p, a in attacks)
        if not later:
            keep.append(err)
    return keep, len(errors) - len(keep)


def _read_config(data: RunData, folder: RunFolder) -> None:
    if not folder.config.is_file():
        return
    try:
        data.config = tomllib.loads(folder.config.read_text(encoding="utf-8", errors="replace"))
    except (tomllib.TOMLDecodeError, OSError, ValueError) as exc:
        data.config_error = f"{type(exc).__name__}: {exc}"


def _read_metrics(data: RunData, folder: RunFolder) -> None:
    objects, bad = read_objects(folder.metrics)
    if bad:
        data.bad_lines[folder.metrics.name] = bad
    buckets: dict[type, list] = {UtilityRow: data.utility, LabelRow: data.labels, InversionRow: data.inversions,
                                 PrivacyRow: data.privacy, AttackErrorRow: data.attack_errors,
                                 SkippedRow: data.skipped, LostRoundRow: data.lost_rounds,
                                 CaptureErrorRow: data.capture_errors, OraclePriorRow: data.oracle_prior}
    positions: dict[int, int] = {}
    attacks: list[tuple[int, AttackRow]] = []
    for i, obj in enumerate(objects):
        kind = obj.get("kind")
        if not isinstance(kind, str) or kind not in ROW_TYPES:
            data.unknown_kinds[str(kind)] += 1
            continue
        try:
            row = row_from_json(obj)
        except (ValueError, TypeError):
            data.malformed[kind] += 1
            continue
        positions[id(row)] = i
        if isinstance(row, AttackRow) and not isinstance(row, OraclePriorRow):
            attacks.append((i, row))
        buckets[type(row)].append(row)
    data.attack_errors, n_err = _errors_still_standing(data.attack_errors, attacks, positions)
    data.labels, n_lab = latest(data.labels)
    data.inversions, n_inv = latest(data.inversions)
    data.oracle_prior, _ = latest(data.oracle_prior)
    data.superseded = n_lab + n_inv + n_err


def _read_rejections(data: RunData, folder: RunFolder) -> None:
    objects, bad = read_objects(folder.rejections)
    if bad:
        data.bad_lines[folder.rejections.name] = bad
    for obj in objects:
        try:
            data.rejections.append(RejectionRow.from_json(obj))
        except (ValueError, TypeError):
            data.malformed["rejection"] += 1


def _count_files(data: RunData, folder: RunFolder) -> None:
    if folder.captures.is_dir():
        try:
            rounds = [d for d in folder.captures.iterdir() if d.is_dir()]
            data.capture_rounds = len(rounds)
            data.num_captures = len(folder.capture_list())  # client files (not a round's global.safetensors)
        except OSError:
            pass
    if folder.images.is_dir():
        try:
            data.num_images = sum(1 for f in folder.images.glob("*.png")
                                  if f.is_file() and not f.stem.endswith("_full"))  # a full grid: the same images
        except OSError:
            pass


def load_run(run_dir: str | Path) -> RunData:
    folder = RunFolder(Path(run_dir))
    data = RunData(run_dir=folder.root)
    _read_config(data, folder)
    _read_metrics(data, folder)
    _read_rejections(data, folder)
    _count_files(data, folder)
    return data
