"""The config sections' fields: one frozen dataclass per TOML table, each field with its default, valid choices or
range and a one-line doc (``opt``). ``fedsim.core.config`` assembles them into :class:`ExperimentConfig` and
validates input against this metadata; the ``[defense]`` table is ``fedsim.core.defense``' modules'."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Scalar = bool | int | float | str


def opt(default: Scalar, *, choices: tuple[str, ...] | None = None, minimum: float | None = None,
        maximum: float | None = None, doc: str = "", refs: bool = False, listed: bool = False) -> Any:
    """A config field with validation metadata; ``refs``: a ``package.module:attr`` passes besides ``choices``;
    ``listed``: a list key, a TOML array or a comma-separated string (``fedsim.core.lists``)."""
    return field(default=default, metadata={"choices": choices, "min": minimum, "max": maximum, "doc": doc,
                                            "refs": refs, "list": listed})


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
    rounds: str = opt("attacked", listed=True, doc="'attacked' (the rounds attack.rounds selects: what an attack or "
                      "a replay can use), 'all' or round numbers")
    clients: str = opt("attacked", listed=True, doc="'attacked' (the clients attack.clients selects), 'all' or "
                       "client ids")


@dataclass(frozen=True)
class AttackSection:
    enabled: bool = opt(False, doc="run attacks on captured updates")
    label_methods: str = opt("ilrg", listed=True, doc="names in fedsim.attacks.labels.LABEL_METHODS")
    inversion: str = opt("none", doc="a name in fedsim.attacks.inversion.INVERSION_METHODS, or 'none'")
    inversion_steps: int = opt(200, minimum=1, doc="optimiser steps of the inversion")
    inversion_tv: float = opt(-1.0, minimum=-1.0, doc="total-variation weight of the inversion (-1 = the method's "
                              "default: ig 2.0 on ReLU-type models, 0.2 decaying with the step size when every "
                              "activation is smooth, e.g. a sigmoid LeNet; fedsim.attacks.inversion.methods.ig_tv_for, "
                              "docs/benchmarks/peers.md)")
    max_inversion_images: int = opt(16, minimum=1, doc="skip inversion of updates covering more samples")
    rounds: str = opt("all", listed=True, doc="'all' or round numbers to attack")
    clients: str = opt("all", listed=True, doc="'all' or client ids to attack")
    max_attacks: int = opt(0, minimum=0, doc="budget of attacked updates per run (0 = no limit)")
    workers: int = opt(1, minimum=0, doc="attack worker processes (0 = inline, blocking)")
    queue_size: int = opt(8, minimum=1, doc="bounded queue of pending attacks")
    queue_policy: str = opt("wait", choices=("wait", "drop"), doc="when the queue is full")
    timeout: float = opt(600.0, minimum=1.0, doc="seconds an attack may run (from when a worker starts it, not queue "
                         "time) before it is scored as failed")
    backend: str = opt("local", choices=("local", "ray"), doc="where attacks run: 'local' (attack.workers processes "
                       "on the server's machine) or 'ray' (each attacked update a Ray task with attack.num_cpus / "
                       "attack.num_gpus, on the Ray the federation runs in: fedsim sweep --ray's cluster)")
    num_cpus: float = opt(0.0, minimum=0.0, doc="attack.backend = 'ray': CPUs each attack task holds (0: Flower's "
                          "client actors hold every CPU of their Ray for the whole run)")
    num_gpus: float = opt(0.0, minimum=0.0, doc="attack.backend = 'ray': GPU share each attack task holds (e.g. 0.5)")
    prior_path: str = opt("", doc="generative prior (ggl/gias) safetensors file; '' = "
                          "<run>/priors/<dataset>_vae.safetensors")
    prior_archs: str = opt("conv", listed=True, doc="ggl/gias decoders (conv, mlp): with several the attack runs "
                           "once per decoder's prior and keeps the lowest criterion (prior_path's file is conv's, "
                           "<stem>-mlp beside it the MLP's)")
    prior_autotrain: bool = opt(False, doc="ggl/gias: train the prior on the public aux split (held-out half of "
                                "the test split) when the file is missing")
    lpips_weights: str = opt("", doc="local LPIPS backbone weights (torchmetrics); '' = LPIPS reported as "
                             "unavailable (never downloaded)")
    oracle_prior: bool = opt(False, doc="also run the ORACLE-PRIOR attack on each attacked FedSGD update (Hayes et "
                             "al. 2023's prior-aware attacker; reads ground truth: the client's partition and batch; "
                             "fedsim.evaluation.prior_aware), to set measured success beside the DP bound")
    plugins: str = opt("", listed=True, doc="modules imported before any method name is looked up (they call "
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
    corrupt: str = opt("", listed=True, doc="client:kind[:round] with kind in nan, inf, shape, dtype, "
                               "missing_key, extra_key, num_examples, huge_norm")
    dropout: str = opt("", listed=True, doc="client[:round] entries whose ClientApp raises")
    straggle: str = opt("", listed=True, doc="client[:round] entries that sleep before replying")
    straggle_seconds: float = opt(2.0, minimum=0.0, doc="how long a straggler sleeps")
    attack_crash: str = opt("", listed=True, doc="client[:round] entries whose attack raises")
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
