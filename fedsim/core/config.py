"""One TOML schema for every experiment.

Presets are TOML files with sections (``[run]``, ``[data]``, ...). Flower flattens them to dotted keys
(``train.lr``) in ``context.run_config``; :func:`from_flat` turns that flat mapping back into an
:class:`ExperimentConfig`, rejecting unknown keys and bad values with the key name and the valid choices.
Only bool/int/float/str values are allowed (Flower's run-config types); lists are comma-separated strings.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

Scalar = bool | int | float | str


from fedsim.core.errors import ConfigError  # noqa: E402,F401  (re-exported: `from fedsim.core.config import ConfigError`)
from fedsim.core.defense_config import DefenseSection, renamed_key_error  # noqa: E402  (one table each)
from fedsim.core.defense_registry import check_defenses, section_class  # noqa: E402  (registered defenses)
from fedsim.core.config_checks import ATTACKED, check_federation, parse_selection  # noqa: E402
from fedsim.core.objref import fold_options, is_ref, override_value  # noqa: E402  (module:attr, [model.options])


def opt(default: Scalar, *, choices: tuple[str, ...] | None = None, minimum: float | None = None,
        maximum: float | None = None, doc: str = "", refs: bool = False) -> Any:
    """A config field with validation metadata; ``refs``: a ``package.module:attr`` passes besides ``choices``."""
    return field(default=default, metadata={"choices": choices, "min": minimum, "max": maximum, "doc": doc,
                                            "refs": refs})


@dataclass(frozen=True)
class RunSection:
    name: str = opt("fedsim", doc="run name: a plain name (no '/', '\\' or '..'), the folder runs/<name>")
    num_rounds: int = opt(3, minimum=1, doc="federated rounds (Flower num-server-rounds)")
    num_clients: int = opt(10, minimum=1, doc="number of simulated SuperNodes / partitions")
    seed: int = opt(0, minimum=0, doc="seed of the partition, the model init, local training and the attacks")
    out_dir: str = opt("", doc="run folder; empty means runs/<name>")
    round_timeout: float = opt(600.0, minimum=1.0, doc="seconds to wait for client replies")
    device: str = opt("auto", doc="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N': local training, "
                      "central evaluation, attacks")


@dataclass(frozen=True)
class DataSection:
    dataset: str = opt("mnist_subset", doc="a name in fedsim.core.data.DATASETS, 'folder' (an ImageFolder tree in "
                       "data.data_dir) or 'package.module:loader' (loader(data_dir=, **data.options) -> "
                       "fedsim.core.data.ImageDataset)")
    data_dir: str = opt("", doc="folder with dataset files (torchvision sets, Fashion-MNIST elsewhere, the "
                        "class-per-subfolder tree of 'folder')")
    image_size: int = opt(0, minimum=0, doc="resize every image to image_size x image_size (0 = keep; the "
                          "images of 'folder' must then share one size)")
    options: str = opt("", doc="[data.options]: keyword arguments of a 'package.module:loader' (bool/int/float/"
                       "str values; carried as one JSON string)")
    partition: str = opt("dirichlet", choices=("iid", "dirichlet", "shards"), doc="how the train split is divided "
                        "among clients: uniformly, label skew by Dirichlet(alpha), or shards_per_client classes each")
    alpha: float = opt(0.5, minimum=1e-4, doc="Dirichlet concentration (smaller = more skew)")
    shards_per_client: int = opt(2, minimum=1, doc="classes per client for pathological shards")
    max_examples_per_client: int = opt(0, minimum=0, doc="cap a client's partition (0 = no cap)")


@dataclass(frozen=True)
class ModelSection:
    name: str = opt("convnet", choices=("fcn3", "lenet5", "convnet", "resnet18", "vgg16"), refs=True,
                    doc="a zoo model or 'package.module:factory' (factory(input_shape=(C, H, W), num_classes=K, "
                    "**model.options) -> nn.Module with K outputs)")
    activation: str = opt("relu", choices=("relu", "sigmoid", "swish", "silu", "leakyrelu", "tanh"),
                          doc="activation of the zoo models (sigmoid: the textbook leak)")
    width: int = opt(16, minimum=1, doc="channels (convnet, lenet5) or hidden units (fcn3)")
    batchnorm: bool = opt(False, doc="BatchNorm in the ConvNet")
    options: str = opt("", doc="[model.options]: keyword arguments of the model (a factory's, or extra ones of a "
                       "zoo model); bool/int/float/str values, carried as one JSON string")


@dataclass(frozen=True)
class TrainSection:
    algorithm: str = opt("fedavg", choices=("fedsgd", "fedavg"), doc="fedsgd: one gradient step on one batch "
                         "per round; fedavg: local_epochs over the partition")
    lr: float = opt(0.05, minimum=1e-12, doc="client SGD learning rate")
    local_epochs: int = opt(1, minimum=1, doc="FedAvg epochs over the partition")
    batch_size: int = opt(32, minimum=1, doc="local batch size (FedSGD: the one batch an update covers)")
    max_local_steps: int = opt(0, minimum=0, doc="cap on FedAvg local steps per round (0 = no cap)")
    fraction_train: float = opt(1.0, minimum=0.0, maximum=1.0, doc="fraction of clients sampled per round")
    min_train_nodes: int = opt(2, minimum=1, doc="fewest clients sampled per round (<= run.num_clients)")


@dataclass(frozen=True)
class CaptureSection:
    enabled: bool = opt(True, doc="store the selected intercepted updates under captures/ (the global model once "
                        "per round, one file per client update)")
    rounds: str = opt("attacked", doc="'attacked' (the rounds attack.rounds selects: what an attack or a replay "
                      "can use), 'all' or comma-separated round numbers")
    clients: str = opt("attacked", doc="'attacked' (the clients attack.clients selects), 'all' or comma-separated "
                       "client ids")


@dataclass(frozen=True)
class AttackSection:
    enabled: bool = opt(False, doc="run attacks on captured updates")
    label_methods: str = opt("ilrg", doc="comma-separated names in fedsim.attacks.labels.LABEL_METHODS")
    inversion: str = opt("none", doc="a name in fedsim.attacks.inversion.INVERSION_METHODS, or 'none'")
    inversion_steps: int = opt(200, minimum=1, doc="optimiser steps of the inversion")
    inversion_tv: float = opt(-1.0, minimum=-1.0, doc="total-variation weight of the inversion (-1 = the method's "
                              "default: ig 2.0 on ReLU-type models, 0.2 decaying with the step size when every "
                              "activation is smooth, e.g. a sigmoid LeNet; fedsim.attacks.inversion.methods.ig_tv_for, "
                              "docs/benchmarks/peers.md)")
    max_inversion_images: int = opt(16, minimum=1, doc="skip inversion of updates covering more samples")
    rounds: str = opt("all", doc="'all' or comma-separated round numbers to attack")
    clients: str = opt("all", doc="'all' or comma-separated client ids to attack")
    max_attacks: int = opt(0, minimum=0, doc="budget of attacked updates per run (0 = no limit)")
    workers: int = opt(1, minimum=0, doc="attack worker processes (0 = inline, blocking)")
    queue_size: int = opt(8, minimum=1, doc="bounded queue of pending attacks")
    queue_policy: str = opt("wait", choices=("wait", "drop"), doc="when the queue is full")
    timeout: float = opt(600.0, minimum=1.0, doc="seconds an attack may run (from when a worker starts it, not queue "
                         "time) before it is scored as failed")
    prior_path: str = opt("", doc="generative prior (ggl/gias) safetensors file; '' = "
                          "<run>/priors/<dataset>_vae.safetensors")
    prior_autotrain: bool = opt(False, doc="ggl/gias: train the prior on the public aux split (held-out half of "
                                "the test split) when the file is missing")
    lpips_weights: str = opt("", doc="local LPIPS backbone weights (torchmetrics); '' = LPIPS reported as "
                             "unavailable (never downloaded)")
    plugins: str = opt("", doc="comma-separated modules imported before any method name is looked up (they call "
                       "register_label_method / register_inversion_method); installed packages' 'fedsim.attacks' "
                       "entry points are loaded too (fedsim.attacks.plugins)")


@dataclass(frozen=True)
class ValidationSection:
    """Plausibility bounds of the server's reply screen (server/validation.py, docs/reliability.md)."""

    max_num_examples: int = opt(1_000_000, minimum=1, doc="largest num-examples a client may claim")
    examples_ratio: float = opt(100.0, minimum=1.0, doc="reject a claim over this many times the lower median "
                                "claim of recent rounds")
    norm_ratio: float = opt(1000.0, minimum=1.0, doc="reject an update norm over this many times the lower "
                            "median norm of recent rounds")
    max_update_norm: float = opt(0.0, minimum=0.0, doc="absolute bound on an update's L2 norm (0 = off)")
    history: int = opt(20, minimum=1, doc="rounds of accepted claims and norms the medians look back over")
    max_weight_share: float = opt(0.5, minimum=0.01, maximum=1.0, doc="largest share of a round's FedAvg weight "
                                  "one reply may carry (FedAvg weights by the client's own, unverifiable "
                                  "num-examples claim); a larger claim is capped to it, logged in "
                                  "rejections.jsonl (1 = off; 1/replies when larger)")


@dataclass(frozen=True)
class FaultsSection:
    """Fault injection (off by default): see clients/faults.py and docs/reliability.md."""

    enabled: bool = opt(False, doc="inject the faults below")
    corrupt: str = opt("", doc="comma-separated client:kind[:round] with kind in nan, inf, shape, dtype, "
                               "missing_key, extra_key, num_examples, huge_norm")
    dropout: str = opt("", doc="comma-separated client[:round] whose ClientApp raises")
    straggle: str = opt("", doc="comma-separated client[:round] that sleep before replying")
    straggle_seconds: float = opt(2.0, minimum=0.0, doc="how long a straggler sleeps")
    attack_crash: str = opt("", doc="comma-separated client[:round] whose attack raises")
    huge_norm_factor: float = opt(1e6, minimum=1.0, doc="huge_norm: update scaled by this factor")


@dataclass(frozen=True)
class TrackingSection:
    """Experiment tracking (off by default): the run's rows and reconstruction grids exported when it ends
    (``fedsim.lab.tracking``; ``fedsim track RUN`` exports a finished run). Needs the ``tracking`` extra."""

    backend: str = opt("none", choices=("none", "tensorboard", "mlflow"), doc="where the utility and attack "
                       "scalars and the reconstruction grids go at the end of the run ('none' = nowhere)")
    dir: str = opt("", doc="tensorboard: the log folder ('' = <run>/tensorboard)")
    uri: str = opt("", doc="mlflow: the tracking URI ('' = a local file store, file:<run>/mlruns)")
    experiment: str = opt("fedsim", doc="mlflow: the experiment name (the MLflow run is named after run.name)")


SECTIONS: dict[str, type] = {
    "run": RunSection,
    "data": DataSection,
    "model": ModelSection,
    "train": TrainSection,
    "capture": CaptureSection,
    "attack": AttackSection,
    "defense": DefenseSection,
    "faults": FaultsSection,
    "validation": ValidationSection,
    "tracking": TrackingSection,
}


@dataclass(frozen=True)
class ExperimentConfig:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    capture: CaptureSection = field(default_factory=CaptureSection)
    attack: AttackSection = field(default_factory=AttackSection)
    defense: DefenseSection = field(default_factory=lambda: section_class()())  # + registered tables
    faults: FaultsSection = field(default_factory=FaultsSection)
    validation: ValidationSection = field(default_factory=ValidationSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)

    def to_flat(self) -> dict[str, Scalar]:
        """Dotted keys (``train.lr``, ``defense.dp_sgd.enabled``) as Flower's run config holds them."""
        return flatten(self.to_nested())

    def to_nested(self) -> dict[str, dict[str, Scalar]]:
        return {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}

    def replace(self, **flat: Any) -> "ExperimentConfig":
        """A copy with some dotted keys changed (validated)."""
        merged = self.to_flat()
        merged.update(flat)
        return from_flat(merged)


def _coerce(key: str, value: Any, f: dataclasses.Field) -> Scalar:
    expected = f.type if isinstance(f.type, type) else {"str": str, "int": int, "float": float, "bool": bool}[f.type]
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (
                isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(value)
    if expected is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _validate(key: str, value: Scalar, f: dataclasses.Field) -> None:
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"] and not (meta.get("refs") and is_ref(value)):
        more = " or a 'package.module:attr'" if meta.get("refs") else ""
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(meta['choices'])}{more}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"{key}: {value!r} is below the minimum {meta['min']}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(f"{key}: {value!r} is above the maximum {meta['max']}")


def from_flat(flat: Mapping[str, Any]) -> ExperimentConfig:
    """Build and validate a config from dotted keys; unknown keys fail with the list of valid ones."""
    per_section: dict[str, dict[str, Scalar]] = {s: {} for s in SECTIONS}
    for key, value in fold_options(flat).items():  # [model.options] / [data.options] -> one JSON string each
        section, _, name = key.partition(".")
        if section not in SECTIONS:
            raise ConfigError(f"{key}: unknown section {section!r}; valid sections: {', '.join(SECTIONS)}")
        by_name = _leaf_fields(_section(section))
        if name not in by_name:
            raise ConfigError(renamed_key_error(key) or _unknown_key(key, section, by_name))
        coerced = _coerce(key, value, by_name[name])
        _validate(key, coerced, by_name[name])
        per_section[section][name] = coerced
    cfg = ExperimentConfig(**{s: _build(_section(s), values) for s, values in per_section.items()})
    _check_cross_section(cfg)
    return cfg


def _section(name: str) -> type:
    """A section's dataclass; ``[defense]`` has one table per registered defense (``fedsim.core.defense_registry``)."""
    return section_class() if name == "defense" else SECTIONS[name]


def _unknown_key(key: str, section: str, by_name: Mapping[str, Any]) -> str:
    """'unknown key' naming the valid keys of the innermost table that the key names."""
    table = section
    names = list(by_name)
    head = key.split(".")[1] if key.count(".") >= 2 else ""
    if head and any(n.startswith(head + ".") for n in names):
        table = f"{section}.{head}"
        names = [n[len(head) + 1:] for n in names if n.startswith(head + ".")]
    return f"{key}: unknown key; valid keys in [{table}]: {', '.join(names)}"


def _table(f: dataclasses.Field) -> type | None:
    """The dataclass of a nested table field (``[defense.dp_sgd]``), else None."""
    factory = f.default_factory
    return factory if factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory) else None


def _leaf_fields(cls: type, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Dotted names (relative to the section) of every scalar field, nested tables included."""
    out: dict[str, dataclasses.Field] = {}
    for f in fields(cls):
        sub = _table(f)
        if sub is None:
            out[prefix + f.name] = f
        else:
            out.update(_leaf_fields(sub, f"{prefix}{f.name}."))
    return out


def _build(cls: type, values: Mapping[str, Scalar]) -> Any:
    """Instantiate a section (and its nested tables) from dotted names relative to it."""
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        sub = _table(f)
        if sub is None:
            if f.name in values:
                kwargs[f.name] = values[f.name]
        else:
            head = f.name + "."
            kwargs[f.name] = _build(sub, {k[len(head):]: v for k, v in values.items() if k.startswith(head)})
    return cls(**kwargs)


def _check_cross_section(cfg: ExperimentConfig) -> None:
    """The checks that need torch (the dataset registry, a CUDA device) come last, so that every other config
    error is reported without importing it (``fedsim run``/``check`` answer in ~0.1 s instead of ~2 s)."""
    _check_run_name(cfg.run.name)
    for key, text in (("capture.rounds", cfg.capture.rounds), ("capture.clients", cfg.capture.clients),
                      ("attack.rounds", cfg.attack.rounds), ("attack.clients", cfg.attack.clients)):
        if text.strip().lower() != ATTACKED:  # capture.* = 'attacked': the attack.* selection (checked as such)
            parse_selection(key, text)
    from fedsim.core.faults_spec import parse_faults

    check_federation(cfg)  # min_train_nodes vs num_clients; attack/capture selections that select nothing

    parse_faults(cfg.faults)
    check_defenses(cfg, ConfigError)  # imports torch only for defense.dp_sgd (Opacus' model check)
    from fedsim.core.references import check_references

    check_references(cfg)  # data.dataset against the registry (imports torch), module:attr references importable
    _check_device(cfg.run.device)


def _check_run_name(name: str) -> None:
    """``run.name`` names the folder ``runs/<name>``: a plain name, never a path out of ``runs/``."""
    if not name.strip() or any(c in name for c in "/\\\0") or ".." in name or name.strip() == ".":
        raise ConfigError(f"run.name: {name!r} is not a plain name (not empty, no '/', '\\' or '..'; it names "
                          "the folder runs/<name>); set run.out_dir or --out for a folder elsewhere")


def _check_device(spec: str) -> None:
    """``run.device`` must name a device this machine has (``auto`` and ``cpu`` always do: no torch import)."""
    if isinstance(spec, str) and spec.strip().lower() in ("auto", "cpu"):
        return
    from fedsim.core.device import resolve_device

    try:
        resolve_device(spec)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in nested.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file; a missing file or bad syntax is a one-line ``ConfigError``."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a TOML file (e.g. configs/smoke.toml)")
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:  # unreadable, not text
        raise ConfigError(f"{what} {path} cannot be read ({type(exc).__name__}: {exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read a preset TOML (sections), apply dotted overrides, validate."""
    flat = flatten(read_toml(path))
    flat.update(overrides or {})
    return from_flat(flat)


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``["train.lr=0.1", ...]`` -> ``{"train.lr": "0.1"}`` (values are coerced by :func:`from_flat`)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        out[key.strip()] = override_value(key.strip(), value.strip().strip('"'))
    return out


def to_toml(cfg: ExperimentConfig) -> str:
    import tomli_w

    return tomli_w.dumps(cfg.to_nested())
