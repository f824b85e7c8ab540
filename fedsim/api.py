"""fedsim's Python API: the one documented public surface (``fedsim.__all__``, re-exported lazily).

    import fedsim
    run = fedsim.run("configs/smoke.toml", out="runs/nb", overrides={"run.num_rounds": 2})
    run.frame("label")              # a tidy DataFrame: one row per attacked update and method
    fedsim.attack(run, methods={"label_methods": "ilrg,llg", "inversion": "ig"})   # replay on the captures
    fedsim.load_run("runs/nb").report_path

The CLI is a thin layer over these functions (``fedsim run``, ``fedsim attack``). This module sits above the
lab shell (it drives it); nothing below imports it. Only this module's ``__all__`` is promised; everything else
in fedsim may change.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from fedsim.core.config import ExperimentConfig, flatten, from_flat, load_config
from fedsim.core.errors import ConfigError, RoundsLost, RunFolderError
from fedsim.core.rows import METRIC_KINDS, ROW_TYPES, LostRoundRow, RejectionRow, Row, UtilityRow
from fedsim.core.runfolder import MARK, Capture, RunFolder

if TYPE_CHECKING:  # pandas and torch are imported by the methods that need them
    import pandas

    from fedsim.core.types import ClientUpdate

__all__ = ["Run", "SweepResult", "run", "load_run", "attack", "sweep", "resolve_config"]

Config = str | Path | ExperimentConfig | Mapping[str, Any]
ATTACK_METHOD_KEYS = {"labels": "attack.label_methods", "label_methods": "attack.label_methods",
                      "inversion": "attack.inversion"}


@dataclass(frozen=True)
class Run:
    """A run folder: its config, typed rows, DataFrames, captures and report."""

    folder: Path

    @property
    def config(self) -> ExperimentConfig:
        """The resolved config the run was started with (``config.toml``)."""
        return load_config(RunFolder(self.folder).config)

    @property
    def report_path(self) -> Path:
        return RunFolder(self.folder).report

    def write_report(self) -> Path:
        """(Re)write ``report.html`` from the rows; returns its path."""
        from fedsim.lab.report import write_report

        return write_report(self.folder)

    def rows(self, kind: str | type[Row] | None = None) -> list[Row]:
        """Typed rows (``fedsim.core.rows``) of ``metrics.jsonl``, all or of one kind (``"label"``, ``LabelRow``,
        ...); ``"rejection"``: the rows of ``rejections.jsonl``."""
        folder = RunFolder(self.folder)
        if kind in ("rejection", RejectionRow):
            return list(folder.rejection_rows())
        return folder.rows(_row_type(kind) if kind is not None else None)

    def frame(self, kind: str | type[Row], defenses: str = "columns") -> "pandas.DataFrame":
        """One tidy DataFrame per row kind: a column per field, ``replay`` a boolean (False for live attacks),
        lists kept as objects. ``defenses``: ``"columns"`` flattens each row's defense settings once into
        ``defense.*`` columns; ``"table"`` gives a ``defense_setting`` index into :meth:`defenses` instead."""
        import pandas as pd

        if defenses not in ("columns", "table"):
            raise ConfigError(f"defenses: {defenses!r} is not one of columns, table")
        cls = RejectionRow if kind in ("rejection", RejectionRow) else _row_type(kind)
        settings = _settings(self.rows())
        records = []
        for row in self.rows(cls):
            record = {f.name: getattr(row, f.name) for f in fields(row)}
            if "replay" in record:
                record["replay"] = bool(record["replay"])
            if "defenses" in record:
                flat = _flat_defenses(record.pop("defenses"))
                if defenses == "columns":
                    record.update(flat)
                else:
                    record["defense_setting"] = settings.index(flat)
            records.append(record)
        columns = [f.name for f in fields(cls) if f.name != "defenses" or defenses == "table"]
        columns = ["defense_setting" if c == "defenses" else c for c in columns]
        return pd.DataFrame.from_records(records, columns=None if records else columns)

    def defenses(self) -> "pandas.DataFrame":
        """The distinct defense settings of the attack rows, one row each (``defense_setting`` = its index)."""
        import pandas as pd

        return pd.DataFrame.from_records(_settings(self.rows())).rename_axis("defense_setting")

    def captures(self) -> list[Capture]:
        """The captured updates as ``(round, client, path)``, in (round, client) order."""
        return RunFolder(self.folder).capture_list()

    def update(self, server_round: int, client: int) -> "ClientUpdate":
        """One captured update as the server saw it (``fedsim.core.types.ClientUpdate``)."""
        from fedsim.core.captures import load_update

        return load_update(RunFolder(self.folder).capture(server_round, client))

    def lost_rounds(self) -> list[int]:
        return sorted({r.round for r in self.rows(LostRoundRow)})


@dataclass(frozen=True)
class SweepResult:
    """A sweep folder: the summary rows (``sweep.jsonl``), the page (``sweep.html``) and one run per point."""

    folder: Path
    rows: list[dict[str, Any]]

    @property
    def report_path(self) -> Path:
        return self.folder / "sweep.html"

    def frame(self) -> "pandas.DataFrame":
        import pandas as pd

        return pd.DataFrame.from_records(self.rows)


def _row_type(kind: str | type[Row]) -> type[Row]:
    if isinstance(kind, type) and issubclass(kind, Row):
        return kind
    if kind not in ROW_TYPES:
        raise ConfigError(f"kind: {kind!r} is not one of {', '.join(METRIC_KINDS)}, rejection")
    return ROW_TYPES[kind]


def _flat_defenses(defenses: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """A row's defense settings as flat ``defense.*`` columns (nested tables joined with dots)."""
    out: dict[str, Any] = {}
    for key, value in (defenses or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_defenses(value, name + "."))
        else:
            out[name if name.startswith("defense") else f"defense.{name}"] = value
    return out


def _settings(rows: Sequence[Row]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in rows:
        if hasattr(row, "defenses"):
            flat = _flat_defenses(row.defenses)
            if flat not in out:
                out.append(flat)
    return out


def resolve_config(config: Config, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """A config from a TOML path or a packaged preset's name (``"smoke"``: ``fedsim list presets``; an existing
    path wins), an ``ExperimentConfig`` or a (nested or dotted) mapping, with dotted ``overrides``
    (``{"train.lr": 0.1, "model.options": {"hidden": 64}}``) applied and validated."""
    overrides = dict(overrides or {})
    if isinstance(config, ExperimentConfig):
        return config.replace(**overrides) if overrides else config
    if isinstance(config, Mapping):
        return from_flat({**flatten(config), **overrides})
    from fedsim.lab.presets import resolve

    return load_config(resolve(config), overrides)


def check_out(out: Path) -> None:
    """``out`` must be a folder or a path one can create: a regular file there (or above) is refused."""
    for path in (out, *out.parents):
        if path.exists() and not path.is_dir():
            what = "is a file, not a folder" if path == out else f"cannot be created: {path} is a file"
            raise ConfigError(f"--out: {out} {what}; name a new or existing folder for the run")


def check_complete(folder: RunFolder) -> None:
    """A run that lost rounds (nothing aggregated) ends with ``RoundsLost`` (non-zero exit, one line)."""
    lost = sorted({r.round for r in folder.rows(LostRoundRow)})
    if lost:
        cfg_rounds = len({r.round for r in folder.rows(UtilityRow) if r.round > 0}) or "?"
        raise RoundsLost(f"{len(lost)} of {cfg_rounds} rounds lost (nothing aggregated in round"
                         f"{'s' if len(lost) > 1 else ''} {', '.join(map(str, lost))}); see "
                         f"{folder.rejections} and the report")


def check_overwrite(out: Path, overwrite: bool) -> None:
    """A marked run folder that holds a previous run is replaced only with ``overwrite`` (``--overwrite``); else
    ``RunFolderError`` (exit 2), one line naming the folder and the flag, nothing touched. An unmarked folder is
    ``RunFolder.prepare``'s to refuse."""
    folder = RunFolder(out)
    if overwrite or not folder.is_marked():
        return
    held = sorted(p.name for p in out.iterdir() if p.name != MARK)
    if held:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise RunFolderError(f"{out}: holds a previous run ({shown}); pass --overwrite to replace it, or give "
                             "--out a new folder")


def run(config: Config, out: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None,
        quiet: bool = True, report: bool = True, strict: bool = True, overwrite: bool = True) -> Run:
    """Run one federation (Flower simulation engine) into ``out`` (default ``run.out_dir``, else
    ``runs/<run.name>`` in the current folder: ``fedsim.core.paths``).

    Config errors and the preflight (dataset, model shape, attack inputs) fail before Flower starts, with one
    line. ``report``: write ``report.html``; ``strict``: raise ``RoundsLost`` when a round aggregated nothing
    (after the report is written); ``overwrite``: replace a previous run in ``out`` (the API's default, so that a
    notebook can re-run a cell; ``fedsim run`` passes False unless ``--overwrite``: :func:`check_overwrite`).
    A user's ``module:attr`` must be importable in every process of the run
    (installed, or on ``PYTHONPATH``: the Flower processes inherit this process's environment)."""
    cfg = resolve_config(config, overrides)
    from fedsim.core.paths import run_folder

    folder = run_folder(cfg, out)
    check_out(folder)
    check_overwrite(folder, overwrite)
    from fedsim.lab.preflight import preflight
    from fedsim.lab.runner import run_federation

    plan = preflight(cfg, folder)
    result = Run(run_federation(cfg, folder, quiet=quiet, plan=plan))
    if report:
        result.write_report()
    if strict:
        check_complete(RunFolder(result.folder))
    return result


def load_run(folder: str | Path) -> Run:
    """An existing run folder (``config.toml`` or ``metrics.jsonl``); ``RunFolderError`` otherwise."""
    path = Path(folder)
    if not path.is_dir():
        raise RunFolderError(f"{path}: no such run folder")
    if not (RunFolder(path).config.is_file() or RunFolder(path).metrics.is_file()):
        raise RunFolderError(f"{path}: not a run folder (no config.toml or metrics.jsonl)")
    return Run(path.resolve())


def attack(run: Run | str | Path, methods: Mapping[str, Any] | None = None, *,
           overrides: Mapping[str, Any] | None = None, quiet: bool = True, report: bool = True) -> Run:
    """Re-run attacks on the captures of a finished run (replay: rows with ``replay = true``).

    ``methods``: ``{"label_methods": "ilrg,llg" or ["ilrg", "llg"], "inversion": "ig"}`` (``labels`` is
    accepted for ``label_methods``), i.e. overrides of ``attack.label_methods`` / ``attack.inversion``;
    ``overrides``: any other ``attack.*`` key (or ``run.device``). Raises ``AttackError`` when attacks failed,
    after attacking every capture (their rows say why)."""
    from fedsim.lab.replay import replay_attacks

    target = run if isinstance(run, Run) else Run(Path(run))  # replay says what is wrong with a folder
    merged = dict(overrides or {})
    for name, value in (methods or {}).items():
        if name not in ATTACK_METHOD_KEYS:
            raise ConfigError(f"methods: {name!r} is not one of {', '.join(ATTACK_METHOD_KEYS)}")
        merged[ATTACK_METHOD_KEYS[name]] = value if isinstance(value, str) else ",".join(value)
    try:
        replay_attacks(target.folder, merged, quiet=quiet)
    finally:
        if report:
            target.write_report()
    return target


def sweep(spec_path: str | Path, out: str | Path, *, parallel: int = 1, overrides: Mapping[str, Any] | None = None,
          quiet: bool = True) -> SweepResult:
    """Run every setting x seed of a sweep file into ``out`` (as ``fedsim sweep``: each setting preflighted
    before the first run starts); returns the summary rows."""
    from fedsim.lab.preflight import preflight
    from fedsim.lab.presets import resolve
    from fedsim.lab.sweep import load_sweep, run_sweep

    if parallel < 1:
        raise ConfigError(f"parallel: {parallel} is below the minimum 1")
    spec_path = resolve(spec_path)  # a path, or a packaged sweep's name (sweep_dp)
    spec = load_sweep(spec_path, dict(overrides or {}))
    for setting in spec.settings:
        preflight(spec.config(setting, spec.seeds[0]))
    rows = run_sweep(spec_path, out, parallel=parallel, overrides=dict(overrides or {}), quiet=quiet)
    return SweepResult(Path(out).resolve(), rows)
