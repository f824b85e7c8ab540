"""The run folder: one object owns every path of ``runs/<name>/`` and reads/writes its typed rows.

Layout (see docs/architecture.md)::

    config.toml                 resolved configuration
    metrics.jsonl               typed rows (fedsim.rows): utility, label, inversion, privacy, attack_error,
                                skipped, lost_round
    rejections.jsonl            rejected client replies (RejectionRow)
    captures/round_R/client_C.safetensors   intercepted updates (server side)
    audit/round_R/client_C.safetensors      ground truth (client side; read only by fedsim.evaluation)
    images/                     ground truth vs reconstruction grids
    priors/                     generative priors (VAE weights) the attacker trained
    report.html, logs/, .flwr/, DONE
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fedsim.results import append_jsonl
from fedsim.rows import RejectionRow, Row, row_from_json

#: What ``fedsim run`` removes from a reused run folder before starting (everything a run writes).
RUN_ARTIFACTS = ("captures", "audit", "images", "metrics.jsonl", "rejections.jsonl", "report.html", "DONE",
                 "logs")


@dataclass(frozen=True)
class RunFolder:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ---- paths ----------------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def rejections(self) -> Path:
        return self.root / "rejections.jsonl"

    @property
    def captures(self) -> Path:
        return self.root / "captures"

    def capture(self, server_round: int, client_id: int) -> Path:
        return self.captures / f"round_{server_round:04d}" / f"client_{client_id:04d}.safetensors"

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    def audit_file(self, server_round: int, client_id: int) -> Path:
        return self.audit / f"round_{server_round:04d}" / f"client_{client_id:04d}.safetensors"

    @property
    def images(self) -> Path:
        return self.root / "images"

    def image(self, server_round: int, client_id: int, method: str) -> Path:
        """Relative path (as rows store it) of an inversion's comparison grid."""
        return Path("images") / f"r{server_round:04d}_c{client_id:04d}_{method}.png"

    @property
    def priors(self) -> Path:
        return self.root / "priors"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def flower_log(self) -> Path:
        return self.logs / "flower.log"

    @property
    def flwr_home(self) -> Path:
        return self.root / ".flwr"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def done(self) -> Path:
        return self.root / "DONE"

    # ---- lifecycle ------------------------------------------------------------------------------------
    def clear(self) -> None:
        """Remove what an earlier run wrote here (``RUN_ARTIFACTS``); keep anything else."""
        for name in RUN_ARTIFACTS:
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def iter_captures(self) -> Iterator[Path]:
        """Capture files in (round, client) order."""
        if self.captures.is_dir():
            yield from sorted(self.captures.glob("round_*/client_*.safetensors"))

    # ---- rows -----------------------------------------------------------------------------------------
    def append(self, row: Row) -> None:
        """Append a typed row to the file of its kind (``rejections.jsonl`` or ``metrics.jsonl``)."""
        append_jsonl(self.rejections if isinstance(row, RejectionRow) else self.metrics, row.to_json())

    def rows_json(self) -> list[dict]:
        """``metrics.jsonl`` as JSON objects (lines that do not parse are skipped)."""
        return read_objects(self.metrics)[0]

    def rows(self, kind: type[Row] | None = None) -> list[Row]:
        """Typed rows of ``metrics.jsonl`` (unknown kinds and bad lines skipped), optionally of one type."""
        out = []
        for data in self.rows_json():
            try:
                row = row_from_json(data)
            except ValueError:
                continue
            if kind is None or isinstance(row, kind):
                out.append(row)
        return out

    def rejection_rows(self) -> list[RejectionRow]:
        out = []
        for data in read_objects(self.rejections)[0]:
            try:
                out.append(RejectionRow.from_json(data))
            except ValueError:
                continue
        return out


def read_objects(path: Path) -> tuple[list[dict], int]:
    """JSON objects of a JSON-lines file and how many non-empty lines were not objects (a run still writing
    may leave a half line)."""
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
            obj = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(obj, dict):
            rows.append(obj)
        else:
            bad += 1
    return rows, bad
