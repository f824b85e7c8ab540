"""Typed rows of a run folder: every line of ``metrics.jsonl`` and ``rejections.jsonl`` is one of these.

Each row is a frozen dataclass with a class-level ``KIND`` (the ``"kind"`` key of its JSON line), ``to_json``
(``None`` optionals are left out, so a line holds only what was measured) and ``from_json`` (unknown keys are
ignored so that an older reader can read a newer file; a missing required key is a ``ValueError``).
Writers (server, evaluation layer, replay) build rows; readers (report, sweep, CLI) get them back through
:func:`row_from_json` / :meth:`fedsim.core.runfolder.RunFolder.rows`.

Non-finite numbers: JSON has no ``Infinity``, and every file fedsim writes is strict JSON
(``json.dumps(..., allow_nan=False)``). ``+inf`` / ``-inf`` (e.g. the epsilon of a mechanism without noise) are
written as the strings ``"inf"`` / ``"-inf"`` (:func:`encode_nonfinite`) and read back as floats by
``from_json`` (float fields only) and :func:`decode_nonfinite`; NaN ("not a number": nothing measured) is
written as ``null``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Mapping

#: The JSON spelling of the infinities (strict JSON has none).
NONFINITE = {"inf": math.inf, "-inf": -math.inf}


def finite_float(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (or a numeric string); None for a bool, NaN, +-inf or
    anything else. The one "is this a usable number" test of the report, the plots and the sweep."""
    if isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def encode_nonfinite(value: Any) -> Any:
    """``value`` with +-inf as ``"inf"`` / ``"-inf"`` and NaN as ``None``, recursively: strict-JSON-ready."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {k: encode_nonfinite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_nonfinite(v) for v in value]
    return value


def decode_nonfinite(value: Any) -> Any:
    """The inverse of :func:`encode_nonfinite` for numbers: ``"inf"`` / ``"-inf"`` back to floats, recursively."""
    if isinstance(value, str):
        return NONFINITE.get(value, value)
    if isinstance(value, Mapping):
        return {k: decode_nonfinite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_nonfinite(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class Row:
    """Base of every run-folder row."""

    KIND: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.KIND} if self.KIND else {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            out[f.name] = encode_nonfinite(dict(value) if isinstance(value, Mapping) else value)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Row":
        types = {f.name: str(f.type) for f in fields(cls)}
        known = {k: (decode_nonfinite(v) if "float" in types[k] else v) for k, v in data.items() if k in types}
        try:
            return cls(**known)
        except TypeError as exc:  # a required key is missing
            raise ValueError(f"{cls.KIND or cls.__name__} row: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class UtilityRow(Row):
    """Central evaluation of the global model after ``round`` (round 0 = the initial model). ``test_accuracy``
    is on the whole test split; ``heldout_accuracy`` on its even-indexed half only, the half that no tuning
    reads (``benchmarks/defenses.py tune`` selects on the odd half): the unbiased utility of a tuned setting."""

    KIND: ClassVar[str] = "utility"
    round: int
    test_accuracy: float
    test_loss: float
    time: float | None = None
    heldout_accuracy: float | None = None


@dataclass(frozen=True, kw_only=True)
class AttackRow(Row):
    """Fields every attack row shares: which update, which method, and what the server knew of it."""

    round: int
    client: int
    method: str
    ok: bool
    seconds: float | None = None
    algorithm: str | None = None
    local_steps: int | None = None
    batch_size: int | None = None
    num_examples: int | None = None
    defenses: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    score_error: str | None = None
    replay: bool | None = None


@dataclass(frozen=True, kw_only=True)
class LabelRow(AttackRow):
    """Label restoration on one update, scored (``label_*``) when ground truth exists."""

    KIND: ClassVar[str] = "label"
    num_samples: int | None = None
    restored_counts: list[int] | None = None
    presence_only: bool | None = None
    label_leacc: float | None = None
    label_lnacc: float | None = None
    label_instacc: float | None = None
    label_cossim: float | None = None
    label_hist_tv: float | None = None  # TV distance restored vs true label histogram (fedsim.core.metrics.labels)
    label_hist_tv_even: float | None = None  # the same for the even split (the know-nothing guess)
    true_counts: list[int] | None = None


@dataclass(frozen=True, kw_only=True)
class InversionRow(AttackRow):
    """Gradient inversion on one update, scored after alignment when ground truth exists."""

    KIND: ClassVar[str] = "inversion"
    label_source: str | None = None
    num_images: int | None = None
    steps: int | None = None
    psnr: float | None = None
    ssim: float | None = None
    ssim_perm_agnostic: float | None = None
    psnr_per_image: list[float] | None = None
    ssim_per_image: list[float] | None = None
    psnr_chance: float | None = None  # PSNR of the constant dataset-mean image vs the true batch (a blind guess)
    exact_fraction: float | None = None  # share of the batch with max-abs pixel error < 1e-3 (metrics.exact)
    label_matches: int | None = None
    lpips: float | None = None
    lpips_note: str | None = None
    unreconstructed: int | None = None  # client samples without a reconstruction (K was an estimate)
    signals: list[str] | None = None  # what the server saw and the attack used (InversionResult.signals)
    criterion: float | None = None  # the attack's own no-ground-truth score, lower = better (InversionResult)
    criterion_name: str | None = None
    ident_class_acc: float | None = None  # identifiability (fedsim.evaluation): public classifier names the class
    ident_class_chance: float | None = None
    ident_reid_acc: float | None = None  # nearest neighbour in the client's pool is the source image
    ident_reid_chance: float | None = None
    reid_bound: float | None = None  # DP bound on any re-identification at ident_reid_chance (fedsim.evaluation.bounds)
    bound_mechanism: str | None = None  # the mechanism the bound is of (sigma, q, steps, sensitivity, relation)
    image: str | None = None


@dataclass(frozen=True, kw_only=True)
class OraclePriorRow(AttackRow):
    """ORACLE-PRIOR attack on one update (``fedsim.evaluation.prior_aware``, Hayes et al. 2023's prior-aware
    attacker): it knows the candidate set and every other training example (ground truth), so it is a measure of
    the DP bound's tightness, never an attack a server could run. ``hits`` of ``targets`` re-identified among
    ``candidates`` (chance ``kappa``); ``bound``: 1 - f(kappa) of the mechanism in ``bound_mechanism``."""

    KIND: ClassVar[str] = "oracle_prior"
    targets: int | None = None
    hits: int | None = None
    success: float | None = None
    kappa: float | None = None
    candidates: int | None = None
    in_batch: int | None = None
    sample_rate: float | None = None
    noise_multiplier: float | None = None
    noise_measured: float | None = None  # ||release - known batch gradients|| / (C sqrt(d)): sigma when they match
    bound: float | None = None
    bound_mechanism: str | None = None
    oracle: str | None = None  # what ground truth it reads


@dataclass(frozen=True, kw_only=True)
class AttackErrorRow(Row):
    """An attack that crashed or timed out before it produced a row of its own."""

    KIND: ClassVar[str] = "attack_error"
    round: int
    client: int
    error: str
    ok: bool = False
    method: str | None = None
    replay: bool | None = None  # True: written by ``fedsim attack`` (a replayed attack crashed)


@dataclass(frozen=True, kw_only=True)
class SkippedRow(Row):
    """An update that was not attacked (queue full, attack not applicable); not a failure."""

    KIND: ClassVar[str] = "skipped"
    round: int
    client: int
    reason: str
    method: str | None = None
    replay: bool | None = None  # True: written by ``fedsim attack`` (a replay found the attack not applicable)


@dataclass(frozen=True, kw_only=True)
class PrivacyRow(Row):
    """The privacy spent so far by a DP mechanism, from its accountant.

    ``format`` 2 (:data:`PRIVACY_FORMAT`) rows state what epsilon is about: ``unit`` (``example`` / ``client``),
    ``relation`` (``add-remove`` / ``replace-one``) and ``sensitivity`` (L2, in the units of the noised vector).
    A row without ``format`` is format 1 (before issue 35): its relation was never stated (central and local DP
    were accounted at ``C`` where their relation needs ``2 C``); readers say so instead of guessing."""

    KIND: ClassVar[str] = "privacy"
    round: int
    epsilon: float
    delta: float
    accountant: str
    mechanism: str | None = None
    time: float | None = None
    noise_multiplier: float | None = None  # std / sensitivity of the release accounted (central DP: per release)
    clients: int | None = None             # central DP: replies summed in the release
    sampled: int | None = None             # central DP: the fixed denominator m (FedAvg's cohort size)
    format: int | None = None              # PRIVACY_FORMAT; None = format 1 (no unit / relation / sensitivity)
    unit: str | None = None                # "example" | "client": whose data the guarantee protects
    relation: str | None = None            # "add-remove" | "replace-one": the neighbouring datasets
    sensitivity: float | None = None       # L2 sensitivity of the noised vector under ``relation``


PRIVACY_FORMAT = 2  # PrivacyRow.format of rows that state unit, relation and sensitivity


@dataclass(frozen=True, kw_only=True)
class LostRoundRow(Row):
    """A round that aggregated nothing: the global model did not change."""

    KIND: ClassVar[str] = "lost_round"
    round: int
    reason: str
    replies: int = 0
    rejected: int = 0
    failed: int = 0
    time: float | None = None


@dataclass(frozen=True, kw_only=True)
class RejectionRow(Row):
    """A malformed or implausible client reply, rejected with its reason (``rejections.jsonl``); with ``action =
    "capped"`` a reply that was accepted with a lowered FedAvg weight (``validation.max_weight_share``)."""

    KIND: ClassVar[str] = ""  # rejections.jsonl has one kind only
    round: int
    node: int | None = None
    client: int | None = None
    reason: str
    action: str | None = None  # None: rejected (not aggregated); "capped": aggregated with a capped weight


@dataclass(frozen=True, kw_only=True)
class CaptureErrorRow(Row):
    """An accepted update that a server sink (the capture store, or any other) failed on: not captured, and the
    round went on. (A failing attack scheduler writes an ``attack_error`` row instead.)"""

    KIND: ClassVar[str] = "capture_error"
    round: int
    client: int
    error: str
    sink: str | None = None


ROW_TYPES: dict[str, type[Row]] = {cls.KIND: cls for cls in (
    UtilityRow, LabelRow, InversionRow, OraclePriorRow, AttackErrorRow, SkippedRow, PrivacyRow, LostRoundRow,
    CaptureErrorRow)}
METRIC_KINDS = tuple(ROW_TYPES)


def row_from_json(data: Mapping[str, Any]) -> Row:
    """The typed row of one ``metrics.jsonl`` object; an unknown ``kind`` is a ``ValueError``."""
    kind = data.get("kind")
    if kind not in ROW_TYPES:
        raise ValueError(f"unknown row kind {kind!r}; known: {', '.join(METRIC_KINDS)}")
    return ROW_TYPES[kind].from_json(data)
