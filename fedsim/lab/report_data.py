"""Reading a run folder for the report, defensively: any file may be missing, empty or cut off mid-line
(a run still in progress); bad lines are skipped and counted, unknown row kinds are counted, nothing is ever
unpickled."""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


# ------------------------------------------------------------------------------------------------ reading
@dataclass
class RunData:
    run_dir: Path
    config: dict = field(default_factory=dict)
    config_error: str | None = None
    utility: list[dict] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)
    inversions: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    rejections: list[dict] = field(default_factory=list)
    unknown_kinds: Counter = field(default_factory=Counter)
    bad_lines: dict[str, int] = field(default_factory=dict)
    superseded: int = 0
    num_captures: int = 0
    capture_rounds: int = 0
    num_images: int = 0

    @property
    def empty(self) -> bool:
        return not (self.config or self.utility or self.labels or self.inversions or self.skipped
                    or self.rejections or self.num_captures or self.num_images)


def _read_jsonl(path: Path) -> tuple[list[dict], int]:
    """Rows of a JSON-lines file that parse to objects; and how many non-empty lines did not."""
    rows: list[dict] = []
    bad = 0
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return rows, 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def _latest(rows: list[dict]) -> tuple[list[dict], int]:
    """One row per (round, client, method): a later row (``fedsim attack`` replay) supersedes an earlier one,
    as its image file has overwritten the earlier one's. Returns the rows kept (in order) and how many went."""
    last: dict[tuple, int] = {}
    for i, r in enumerate(rows):
        last[(str(r.get("round")), str(r.get("client")), str(r.get("method")))] = i
    keep = sorted(last.values())
    return [rows[i] for i in keep], len(rows) - len(keep)


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    data = RunData(run_dir=run_dir)
    cfg_path = run_dir / "config.toml"
    if cfg_path.is_file():
        try:
            data.config = tomllib.loads(cfg_path.read_text(encoding="utf-8", errors="replace"))
        except (tomllib.TOMLDecodeError, OSError, ValueError) as exc:
            data.config_error = f"{type(exc).__name__}: {exc}"
    rows, bad = _read_jsonl(run_dir / "metrics.jsonl")
    if bad:
        data.bad_lines["metrics.jsonl"] = bad
    buckets = {"utility": data.utility, "label": data.labels, "inversion": data.inversions,
               "skipped": data.skipped}
    for row in rows:
        kind = row.get("kind")
        if isinstance(kind, str) and kind in buckets:
            buckets[kind].append(row)
        else:
            data.unknown_kinds[str(kind)] += 1
    data.labels, n_lab = _latest(data.labels)
    data.inversions, n_inv = _latest(data.inversions)
    data.superseded = n_lab + n_inv
    rej, bad = _read_jsonl(run_dir / "rejections.jsonl")
    data.rejections = rej
    if bad:
        data.bad_lines["rejections.jsonl"] = bad
    cap = run_dir / "captures"
    if cap.is_dir():
        try:
            rounds = [d for d in cap.iterdir() if d.is_dir()]
            data.capture_rounds = len(rounds)
            data.num_captures = sum(1 for d in rounds for f in d.glob("*.safetensors") if f.is_file())
        except OSError:
            pass
    img = run_dir / "images"
    if img.is_dir():
        try:
            data.num_images = sum(1 for f in img.glob("*.png") if f.is_file())
        except OSError:
            pass
    return data
