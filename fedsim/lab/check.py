"""``fedsim check CONFIG``'s checks: the preflight result and the expected disk use of the captures and the audit
store, without starting Flower (``fedsim run`` prints the same estimate in one line at start); what the command
prints is ``fedsim.lab.check_output``, the time estimate ``fedsim.lab.check_plan``.

The estimate follows the storage layout (``fedsim.core.captures``, ``fedsim.core.capture_plan``): one client file per
captured update (the weights after local training and the buffers: one state dict) and one global file per round
with a capture (the global model sent: one state dict), each with its safetensors header; the audit store holds,
per captured update, every input and label the client trained on (float32 images, int64 labels; each client's
partition size and local steps as the run draws them). Client sampling (``train.fraction_train``) gives the
expected number; ``attack.max_attacks`` may stop the scheduler's captures earlier (an upper bound then).
Metrics, images and the report come on top (small).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim.core.capture_plan import audited, captured
from fedsim.core.config import ExperimentConfig
from fedsim.core.defense.secagg import AGGREGATE_CLIENT

#: bytes of a capture's JSON metadata beyond its defense settings (scalars, parameter order): measured ~0.3-1 kB
_META_BASE = 400
_GLOBAL_META = 80  # a global file's metadata: round and run id


@dataclass(frozen=True)
class DiskEstimate:
    """``captures`` client files and ``global_files`` global files of ``model_bytes`` (+ ``header_bytes``) each,
    and ``audit_bytes`` of ground truth in ``audit_files`` files: ``total_bytes``."""

    captures: int
    model_bytes: int
    global_files: int = 0
    header_bytes: int = 0
    audit_files: int = 0
    audit_bytes: int = 0

    global_header_bytes: int = 0

    @property
    def capture_bytes(self) -> int:
        return (self.captures * (self.model_bytes + self.header_bytes)
                + self.global_files * (self.model_bytes + self.global_header_bytes))

    @property
    def total_bytes(self) -> int:
        return self.capture_bytes + self.audit_bytes

    @property
    def inline_bytes(self) -> int:
        """The captures in the layout before the global file (weights before inside every client file)."""
        return self.captures * (2 * self.model_bytes + self.header_bytes)

    def line(self) -> str:
        return (f"expected disk use (estimate): captures {_mb(self.capture_bytes)} ({self.captures} updates + "
                f"{self.global_files} global model{'' if self.global_files == 1 else 's'} of {_mb(self.model_bytes)}), "
                f"audit {_mb(self.audit_bytes)} "
                f"({self.audit_files} updates); total {_mb(self.total_bytes)}")

    def to_json(self) -> dict[str, Any]:
        return {"captured_updates": self.captures, "global_files": self.global_files,
                "model_bytes": self.model_bytes, "header_bytes": self.header_bytes,
                "global_header_bytes": self.global_header_bytes,
                "capture_bytes": self.capture_bytes, "audit_files": self.audit_files,
                "audit_bytes": self.audit_bytes, "total_bytes": self.total_bytes, "estimate": True}


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 or n == 0 else f"{n / 1e3:.1f} kB"


def _sampled(cfg: ExperimentConfig) -> int:
    """Clients trained per round (Flower's sampling: the fraction, at least ``train.min_train_nodes``)."""
    n = cfg.run.num_clients
    return min(n, max(int(n * cfg.train.fraction_train), cfg.train.min_train_nodes))


def _secagg(cfg: ExperimentConfig) -> bool:
    from fedsim.core.defense.registry import aggregate_only

    return aggregate_only(cfg.defense)


def captured_updates(cfg: ExperimentConfig) -> int:
    """Updates captured over the run (expected number when clients are sampled; one aggregate a round under
    SecAgg+)."""
    rounds = range(1, cfg.run.num_rounds + 1)
    if _secagg(cfg):
        return sum(captured(cfg, r, AGGREGATE_CLIENT) for r in rounds)
    n = cfg.run.num_clients
    hits = sum(captured(cfg, r, c) for r in rounds for c in range(n))
    return math.ceil(hits * _sampled(cfg) / n)


def capture_rounds(cfg: ExperimentConfig) -> int:
    """Rounds with at least one capture (one global file each)."""
    client_ids = [AGGREGATE_CLIENT] if _secagg(cfg) else range(cfg.run.num_clients)
    return sum(any(captured(cfg, r, c) for c in client_ids) for r in range(1, cfg.run.num_rounds + 1))


def model_bytes(cfg: ExperimentConfig) -> int:
    """Bytes of the global model's state dict (parameters and buffers) for this config's dataset."""
    return sum(t.numel() * t.element_size() for t in _state(cfg).values())


def _state(cfg: ExperimentConfig) -> dict:
    from fedsim.core.experiment import make_model

    return make_model(cfg).state_dict()


def header_bytes(cfg: ExperimentConfig, state: dict) -> tuple[int, int]:
    """Safetensors headers of (a client file, a global file): one JSON entry per tensor, and the metadata (the
    client file's holds every defense setting)."""
    entries = len(json.dumps({f"after/{name}": {"dtype": "F32", "shape": list(t.shape),
                                                 "data_offsets": [10 ** 6, 10 ** 6]} for name, t in state.items()}))
    defenses = {k: v for k, v in cfg.to_flat().items() if k.startswith("defense.")}
    return entries + len(json.dumps(defenses)) + _META_BASE, entries + _GLOBAL_META


def samples_per_update(cfg: ExperimentConfig, n: int) -> int:
    """Examples a client of ``n`` examples trains on in one round (``fedsim.core.training.step_batches``)."""
    b = cfg.train.batch_size
    if cfg.train.algorithm == "fedsgd":
        return min(b, n)
    per_epoch = [b] * (n // b) + ([n % b] if n % b else [])
    steps = per_epoch * cfg.train.local_epochs
    return sum(steps[:cfg.train.max_local_steps] if cfg.train.max_local_steps else steps)


def audit_estimate(cfg: ExperimentConfig) -> tuple[int, int]:
    """(files, bytes) of the audit store: each audited update's inputs (float32) and labels (int64)."""
    from fedsim.core.experiment import client_indices, dataset

    ds = dataset(cfg)
    per_sample = 4 * math.prod(ds.input_shape) + 8
    n, secagg, share = cfg.run.num_clients, _secagg(cfg), _sampled(cfg) / cfg.run.num_clients
    sizes = [len(client_indices(cfg, c, n)) for c in range(n)]
    files, total = 0.0, 0.0
    for r in range(1, cfg.run.num_rounds + 1):
        for c in range(n):
            if audited(cfg, r, c, secagg):
                files += share
                total += share * (samples_per_update(cfg, sizes[c]) * per_sample + 300)  # + header
    return math.ceil(files), math.ceil(total)


def estimate(cfg: ExperimentConfig) -> DiskEstimate:
    """The disk estimate of ``cfg`` (builds the model once and reads the partition sizes; no training)."""
    count = captured_updates(cfg)
    audit_files, audit_bytes = audit_estimate(cfg)
    if not count:
        return DiskEstimate(0, 0, audit_files=audit_files, audit_bytes=audit_bytes)
    state = _state(cfg)
    size = sum(t.numel() * t.element_size() for t in state.values())
    client_header, global_header = header_bytes(cfg, state)
    return DiskEstimate(count, size, capture_rounds(cfg), client_header, audit_files, audit_bytes, global_header)


def check(cfg: ExperimentConfig, run_dir: str | Path | None = None) -> DiskEstimate:
    """Run the preflight (raises a one-line ``FedsimError``) and return the disk estimate."""
    from fedsim.lab.preflight import preflight

    preflight(cfg, run_dir)
    return estimate(cfg)


def config_flats(path: str | Path, overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The flat configs a file describes, read as TOML only (nothing imported): one for a run's config; for a
    sweep file its base with the file's sections, then each setting's overrides on top."""
    from fedsim.core.config import flatten, read_toml

    nested = read_toml(path)
    spec = nested.pop("sweep", None)
    if not isinstance(spec, dict):
        return [{**flatten(nested), **(overrides or {})}]
    from fedsim.lab.sweep.spec import base_file

    base = flatten(read_toml(base_file(Path(path), spec["base"]), "sweep base")) if spec.get("base") else {}
    flat = {**base, **flatten(nested), **(overrides or {})}
    flats = [flat]
    settings = spec.get("settings")
    for table in settings if isinstance(settings, list) else ():
        if isinstance(table, dict) and isinstance(table.get("set"), dict):
            flats.append({**flat, **flatten(table["set"])})
    params = spec.get("parameters", [spec["parameter"]] if "parameter" in spec else [])
    for values in spec.get("values", []) if isinstance(params, list) else ():
        row = values if "parameters" in spec and isinstance(values, list) else [values]
        flats.append({**flat, **dict(zip(params, row))})
    return flats


def code_lines(path: str | Path, overrides: dict[str, Any] | None = None) -> list[str]:
    """What ``fedsim check`` lists after its verdict (read from the TOML alone): the code this config (or sweep
    file) makes every process of a run import (``fedsim.core.objref.config_code``: ``module:attr`` factories,
    custom defense mods and wrappers, ``attack.plugins``) and the attack plugins installed in this environment
    (entry points of the ``fedsim.attacks`` group, imported by every run)."""
    from importlib.metadata import entry_points

    from fedsim.core.objref import config_code

    refs = list(dict.fromkeys(ref for flat in config_flats(path, overrides) for ref in config_code(flat)))
    installed = sorted(f"{ep.name} = {ep.value!r}" for ep in entry_points(group="fedsim.attacks"))
    if refs:
        lines = [f"code: this config imports {len(refs)} module reference{'s' if len(refs) > 1 else ''} when it is "
                 "loaded and in every process of its run (a config is code: run only configs you trust):"]
        lines += [f"  {ref.line()}" for ref in refs]
    else:
        lines = ["code: this config names no module of its own (fedsim's registered names only)"]
    lines.append("installed attack plugins (entry points 'fedsim.attacks', imported by every run): "
                 + (", ".join(installed) if installed else "none"))
    return lines


def render(cfg: ExperimentConfig, disk: DiskEstimate, fmt: str, code: list[str] | None = None) -> str:
    """The resolved config, ``preflight: ok`` and the disk estimate as ``text`` (TOML) or ``json`` (with
    ``code``: the lines of :func:`code_lines`, which the text form prints first)."""
    if fmt == "json":
        doc: dict[str, Any] = {"valid": True, "code": list(code or []), "config": cfg.to_nested(),
                               "preflight": "ok", "disk_estimate": disk.to_json()}
        return json.dumps(doc, indent=2)
    from fedsim.core.config import to_toml

    return f"{to_toml(cfg).rstrip()}\n\n# preflight: ok\n# {disk.line()}"


@dataclass(frozen=True)
class SettingCheck:
    """One sweep setting that passed the preflight for every seed: its label, replayed methods and the disk
    estimate of each seed's run (partition sizes follow the seed)."""

    index: int
    label: str
    replay: tuple[str, ...]
    disks: tuple[DiskEstimate, ...]


@dataclass(frozen=True)
class SweepCheck:
    """A sweep file's check: every (setting, seed) federation passed the preflight."""

    name: str
    seeds: tuple[int, ...]
    settings: tuple[SettingCheck, ...]

    @property
    def federations(self) -> int:
        return sum(len(s.disks) for s in self.settings)

    @property
    def total_bytes(self) -> int:
        return sum(disk.total_bytes for s in self.settings for disk in s.disks)


def is_sweep_file(path: str | Path) -> bool:
    """Whether the TOML file at ``path`` is a sweep (a ``[sweep]`` table) rather than one run's config."""
    from fedsim.core.config import read_toml

    return isinstance(read_toml(path).get("sweep"), dict)


def check_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepCheck:
    """Load a sweep file (``fedsim.lab.sweep.load_sweep``: its keys, settings, seeds and replayed methods) and run
    the preflight of every federation it would start; the first failure raises its one-line ``FedsimError``
    naming the setting."""
    from fedsim.core.errors import FedsimError
    from fedsim.lab.sweep.spec import load_sweep

    sweep = load_sweep(path, overrides)
    rows = []
    for s in sweep.settings:
        disks = []
        for seed in sweep.seeds:
            try:
                disks.append(check(sweep.config(s, seed)))
            except FedsimError as exc:
                raise type(exc)(f"setting {s.index} ({s.label}), seed {seed}: {exc}") from exc
        rows.append(SettingCheck(s.index, s.label, s.replay, tuple(disks)))
    return SweepCheck(sweep.name, sweep.seeds, tuple(rows))


def render_sweep(result: SweepCheck, fmt: str, code: list[str] | None = None) -> str:
    """``fedsim check SWEEP``: the settings, replays and disk estimates as ``text`` or ``json``."""
    if fmt == "json":
        return json.dumps({"valid": True, "code": list(code or []), "sweep": result.name, "seeds": list(result.seeds),
                           "federations": result.federations, "preflight": "ok",
                           "settings": [{"index": s.index, "label": s.label, "replay": list(s.replay),
                                         "disk_estimates": [d.to_json() for d in s.disks]}
                                        for s in result.settings],
                           "total_bytes": result.total_bytes}, indent=2)
    lines = [f"sweep {result.name}: {len(result.settings)} settings x {len(result.seeds)} seeds "
             f"({', '.join(map(str, result.seeds))}) = {result.federations} federations; preflight: ok"]
    for s in result.settings:
        lines.append(f"  setting {s.index}: {s.label}; replayed: {', '.join(s.replay) or '-'}; "
                     f"seed {result.seeds[0]}'s run {s.disks[0].line()}")
    lines.append(f"expected disk use of the whole sweep (estimate): {_mb(result.total_bytes)}")
    return "\n".join(lines)
