"""The run folder: one object owns every path of ``runs/<name>/`` and reads/writes its typed rows.

Layout (see docs/architecture.md)::

    config.toml                 resolved configuration
    resolved.json               the run resolved at load: fingerprint, attack plan, defenses, data spec
    metrics.jsonl               typed rows (fedsim.core.rows): utility, label, inversion, privacy, attack_error,
                                skipped, lost_round
    rejections.jsonl            rejected client replies (RejectionRow)
    captures/round_R/global.safetensors     the global model sent in round R (once per round)
    captures/round_R/client_C.safetensors   intercepted updates (server side): weights after, buffers, metadata
    audit/round_R/client_C.safetensors      ground truth (client side; read only by fedsim.evaluation)
    images/                     ground truth vs reconstruction grids
    tensorboard/, mlruns/, mlartifacts/   experiment tracking exports ([tracking], fedsim.lab.tracking)
    priors/                     generative priors (VAE weights) the attacker trained
    report.html, logs/, .flwr/, DONE
    .fedsim-run                 the mark: fedsim created this folder and may clear what a run wrote here

A run folder is owned: ``prepare()`` (every entry point that starts a run) creates a new folder or takes an
empty one and marks it, clears a marked one, and refuses anything else with ``RunFolderError`` (exit 2),
touching nothing. ``clear()`` refuses an unmarked folder too.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fedsim.core.errors import RunFolderError
from fedsim.core.results import append_jsonl
from fedsim.core.rows import RejectionRow, Row, row_from_json

#: What ``fedsim run`` removes from a reused run folder before starting (everything a run writes).
RUN_ARTIFACTS = ("captures", "audit", "images", "metrics.jsonl", "rejections.jsonl", "report.html", "DONE",
                 "resolved.json", "logs", "tensorboard", "mlruns", "mlartifacts")

#: The file that marks a folder as a fedsim run folder (written when fedsim creates or takes the folder).
MARK = ".fedsim-run"
MARK_TEXT = ("fedsim run folder: fedsim created it and clears what a run wrote here (" + ", ".join(RUN_ARTIFACTS)
             + ") before the next run into it; delete this file to keep fedsim from clearing it.\n")


#: the file of a round's capture folder that holds the global model sent that round (``weights_before``)
GLOBAL_CAPTURE = "global.safetensors"

_CAPTURE_ROUND = re.compile(r"round_(\d+)")
_CAPTURE_CLIENT = re.compile(r"client_(\d+)\.safetensors")


@dataclass(frozen=True)
class Capture:
    """One capture file of a run folder: the update of ``client`` in ``round``."""

    round: int
    client: int
    path: Path


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
    def resolved(self) -> Path:
        """The run resolved at load (``fedsim.core.resolved.ResolvedRun``): what every process rehydrates."""
        return self.root / "resolved.json"

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

    def capture_global(self, server_round: int) -> Path:
        """The global model sent in ``server_round`` (the ``weights_before`` of that round's captures)."""
        return self.captures / f"round_{server_round:04d}" / GLOBAL_CAPTURE

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
    def tensorboard(self) -> Path:
        """TensorBoard event files of ``[tracking] backend = "tensorboard"`` (default ``tracking.dir``)."""
        return self.root / "tensorboard"

    @property
    def mlruns(self) -> Path:
        """The local MLflow file store of ``[tracking] backend = "mlflow"`` (default ``tracking.uri``)."""
        return self.root / "mlruns"

    @property
    def mlartifacts(self) -> Path:
        """Artifacts of an MLflow experiment that ``fedsim.lab.tracking`` created in a database store."""
        return self.root / "mlartifacts"

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

    @property
    def mark(self) -> Path:
        return self.root / MARK

    # ---- lifecycle ------------------------------------------------------------------------------------
    def is_marked(self) -> bool:
        """True when fedsim created (or took, empty) this folder as a run folder."""
        return self.mark.is_file()

    def claim(self) -> None:
        """Make ``root`` a run folder: a new or empty folder is created and marked, a marked one is kept as it
        is (nothing removed); a file, or a non-empty folder without the mark, is refused (``RunFolderError``)
        with nothing touched."""
        if self.root.exists() and not self.root.is_dir():
            raise RunFolderError(f"{self.root}: is a file, not a folder; give --out (or run.out_dir) a folder")
        if self.is_marked():
            return
        if self.root.is_dir() and any(self.root.iterdir()):
            raise RunFolderError(self._refusal())
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.mark.write_text(MARK_TEXT, encoding="utf-8")
        except OSError as exc:
            raise RunFolderError(f"{self.root}: cannot create the run folder ({exc.strerror or exc})") from None

    def prepare(self) -> None:
        """The folder for a new run: ``claim()``, then ``clear()`` (what an earlier run wrote here goes)."""
        self.claim()
        self.clear()

    def clear(self) -> None:
        """Remove what an earlier run wrote here (``RUN_ARTIFACTS``); keep anything else. Only in a marked
        folder: anything else raises ``RunFolderError`` and nothing is removed."""
        if not self.root.exists():
            return
        if not self.is_marked():
            raise RunFolderError(self._refusal())
        for name in RUN_ARTIFACTS:
            path = self.root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def _refusal(self) -> str:
        """One line: why this folder is not cleared and what to do."""
        head = f"{self.root}: not a fedsim run folder (no {MARK} mark) and not empty; refusing to use it"
        names = {p.name for p in self.root.iterdir()}
        if names <= {*RUN_ARTIFACTS, "config.toml", "priors", ".flwr"} and names & {
                "config.toml", "metrics.jsonl", "captures", "audit"}:  # only what a run writes: an older fedsim's
            return (f"{head}: it looks like a run folder from before fedsim marked its folders; if it is one, "
                    f"delete it or create {self.mark} to let fedsim clear and re-use it")
        return f"{head}: give --out (or run.out_dir) a new or empty folder"

    def iter_captures(self) -> Iterator[Path]:
        """Capture files in (round, client) order."""
        if self.captures.is_dir():
            yield from sorted(self.captures.glob("round_*/client_*.safetensors"))

    def capture_list(self) -> list[Capture]:
        """Every capture as ``(round, client, path)``, in (round, client) order: the one parser of capture names
        (``round_R/client_C.safetensors``); a file whose name is not one (``client_old.safetensors``) is not a
        capture fedsim wrote and is left out."""
        out = []
        for path in self.iter_captures():
            r, c = _CAPTURE_ROUND.fullmatch(path.parent.name), _CAPTURE_CLIENT.fullmatch(path.name)
            if r and c:
                out.append(Capture(int(r.group(1)), int(c.group(1)), path))
        return sorted(out, key=lambda cap: (cap.round, cap.client))

    def captures_selected(self, rounds: frozenset[int] | None, clients: frozenset[int] | None,
                          limit: int = 0) -> list[Capture]:
        """The captures of these rounds and clients (``None``: all, as ``fedsim.core.config.parse_selection``
        returns), at most the first ``limit`` of them when ``limit`` > 0 (``attack.max_attacks``)."""
        out = [cap for cap in self.capture_list()
               if (rounds is None or cap.round in rounds) and (clients is None or cap.client in clients)]
        return out[:limit] if limit > 0 else out

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


def global_capture_of(capture: str | Path) -> Path:
    """The global-model file beside a client capture file (same round folder)."""
    return Path(capture).parent / GLOBAL_CAPTURE


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
