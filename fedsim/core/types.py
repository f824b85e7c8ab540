"""Records that flow through fedsim (frozen dataclasses).

``ClientUpdate`` is what the curious server sees of one client in one round (or of a secure aggregate: its
``cohort``; every defense setting in ``defenses``, a ``fedsim.core.defense.base.DefenseRecord`` written and read
back by the defense objects); ``GroundTruth`` is what the
client really trained on (written only by the simulation's audit channel, read only by scoring);
``LabelRestoration`` and ``AttackResult`` are what the attacks produce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

ALGORITHMS = ("fedsgd", "fedavg")


from fedsim.core.defense.base import DefenseRecord  # noqa: E402
from fedsim.core.errors import InvalidUpdateError  # noqa: E402,F401  (re-exported)


def _check_tensors(name: str, tensors: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor] | None) -> None:
    if reference is not None:
        missing = sorted(set(reference) - set(tensors))
        extra = sorted(set(tensors) - set(reference))
        if missing or extra:
            raise InvalidUpdateError(f"{name}: missing keys {missing[:5]}, unexpected keys {extra[:5]}")
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise InvalidUpdateError(f"{name}[{key}]: not a tensor ({type(value).__name__})")
        if reference is not None:
            ref = reference[key]
            if tuple(value.shape) != tuple(ref.shape):
                raise InvalidUpdateError(f"{name}[{key}]: shape {tuple(value.shape)} != expected {tuple(ref.shape)}")
            if value.dtype != ref.dtype:
                raise InvalidUpdateError(f"{name}[{key}]: dtype {value.dtype} != expected {ref.dtype}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise InvalidUpdateError(f"{name}[{key}]: contains NaN or Inf")


@dataclass(frozen=True)
class ClientUpdate:
    """One client's reply in one round, as the server sees it (parameters only; buffers separately).

    ``local_steps`` is the number of SGD steps the client took (1 for FedSGD), so that
    ``(weights_before - weights_after) / (local_steps * lr)`` is the FedAvg "fake gradient" of Geng et al.
    ``reported_loss`` is the ``train_loss`` the client put in its reply (the mean cross-entropy over its local
    steps' batches, each at that step's weights; ``fedsim.core.training.train_locally``), ``None`` when the reply
    had none (a DP mechanism or SecAgg+ hides it; a secure aggregate never has one).
    """

    run_id: str
    server_round: int
    client_id: int
    algorithm: str
    weights_before: Mapping[str, torch.Tensor]
    weights_after: Mapping[str, torch.Tensor]
    lr: float
    local_epochs: int
    local_steps: int
    batch_size: int
    num_examples: int
    buffers_after: Mapping[str, torch.Tensor] = field(default_factory=dict)
    buffers_before: Mapping[str, torch.Tensor] = field(default_factory=dict)
    defenses: DefenseRecord = field(default_factory=DefenseRecord)  # every defense setting (Defense.record)
    cohort: tuple[int, ...] = ()  # a secure aggregate: the partition ids it sums (client_id is the aggregate's)
    reported_loss: float | None = None  # the reply's train_loss, when the client released one

    def __post_init__(self) -> None:
        if self.reported_loss is not None:
            loss = self.reported_loss
            if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss) or loss < 0:
                raise InvalidUpdateError(f"reported_loss must be a finite non-negative number, got {loss!r}")
            object.__setattr__(self, "reported_loss", float(loss))
        object.__setattr__(self, "cohort", tuple(int(c) for c in self.cohort))
        object.__setattr__(self, "defenses", DefenseRecord.of(self.defenses))  # a plain mapping becomes typed
        if any(c < 0 for c in self.cohort):
            raise InvalidUpdateError(f"cohort {self.cohort}: partition ids are non-negative")
        if self.algorithm not in ALGORITHMS:
            raise InvalidUpdateError(f"algorithm {self.algorithm!r} is not one of {ALGORITHMS}")
        if not self.weights_before:
            raise InvalidUpdateError("weights_before is empty")
        _check_tensors("weights_before", self.weights_before, None)
        _check_tensors("weights_after", self.weights_after, self.weights_before)
        _check_tensors("buffers_before", self.buffers_before, None)
        _check_tensors("buffers_after", self.buffers_after, self.buffers_before or None)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise InvalidUpdateError(f"lr must be a positive finite number, got {self.lr!r}")
        for name in ("local_epochs", "local_steps", "batch_size", "num_examples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "local_epochs" else 1):
                raise InvalidUpdateError(f"{name} must be a positive integer, got {value!r}")
        if self.num_examples > 10_000_000:
            raise InvalidUpdateError(f"num_examples={self.num_examples} is absurd")

    @property
    def parameter_names(self) -> list[str]:
        return list(self.weights_before)


@dataclass(frozen=True)
class GroundTruth:
    """The exact inputs and labels a client used, one entry per local SGD step.

    Written only by the audit channel of the simulation; read only by scoring code.
    """

    server_round: int
    client_id: int
    inputs: tuple[torch.Tensor, ...]  # per step: [B, *input_shape], normalised model inputs
    labels: tuple[torch.Tensor, ...]  # per step: [B] long

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.labels):
            raise ValueError("inputs and labels must have one entry per local step")

    @property
    def all_inputs(self) -> torch.Tensor:
        return torch.cat(list(self.inputs))

    @property
    def all_labels(self) -> torch.Tensor:
        return torch.cat(list(self.labels))

    def unique_samples(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs/labels of the first epoch's steps (each sample once, in order of first visit), as FedAvg
        inversion targets. Deduplicated on the tensors' own device (no copy to the host per sample)."""
        x, y = self.all_inputs, self.all_labels
        n = x.shape[0]
        distinct, group = torch.unique(x.reshape(n, -1), dim=0, return_inverse=True)
        first = torch.full((distinct.shape[0],), n, dtype=torch.long, device=x.device)
        first = first.scatter_reduce(0, group, torch.arange(n, device=x.device), reduce="amin")
        keep = first.sort().values
        return x[keep], y[keep]


@dataclass(frozen=True)
class LabelRestoration:
    """Result of a label restoration method: per-class counts and the expanded sorted label list."""

    method: str
    counts: torch.Tensor  # LongTensor[C]
    labels: torch.Tensor  # LongTensor[K], sorted
    presence_only: bool = False
    soft_labels: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None
    probabilities: torch.Tensor | None = None
    seconds: float = 0.0
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttackResult:
    """One attack on one captured update (no scores: those come from ``fedsim.evaluation``) and its run time.

    The base of the typed results (:class:`LabelResult`, :class:`InversionResult`); the evaluation layer
    dispatches on the type (each becomes its own row type), never on a tag. ``ok`` false with
    ``not_applicable`` is a skip (``AttackNotApplicable``: not tried), without it a failure (``error``)."""

    client_id: int
    server_round: int
    method: str
    ok: bool
    labels: torch.Tensor | None = None
    seconds: float = 0.0
    error: str | None = None
    not_applicable: bool = False  # skipped (``AttackNotApplicable``), not failed


@dataclass(frozen=True)
class LabelResult(AttackResult):
    """A label restoration: the method's full output and K, the samples it restored (``num_samples``, as in the
    row; ``k_source``: ``reported`` from the example count, or ``estimate``)."""

    attack = "label"  # a display name (not a field); code dispatches on the type

    restoration: LabelRestoration | None = None
    num_samples: int = 0
    k_source: str = "reported"


@dataclass(frozen=True)
class InversionResult(AttackResult):
    """A reconstruction [K, C, H, W] (model space), its optimisation steps and where its labels came from."""

    attack = "inversion"  # a display name (not a field); code dispatches on the type

    reconstruction: torch.Tensor | None = None
    steps: int | None = None
    label_source: str | None = None
    #: what the server saw that the attack used beyond the fake gradient (e.g. "bn-buffers", "client schedule",
    #: "public split"), shown in rows and the report
    signals: tuple[str, ...] = ()
    #: the attack's own score of this reconstruction, computed without ground truth (lower = better; the
    #: attacker's pick between methods / settings uses it); ``criterion_name`` says which
    criterion: float | None = None
    criterion_name: str | None = None
