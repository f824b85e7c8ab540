"""One record shape for every attack method (label, inversion, generative), and the registry that holds them.

A method is an :class:`AttackMethod`: its config ``name``, its ``kind``, the ``paper`` it follows (with the
year), a one-line ``summary``, what it ``needs`` from the capture or the server (:class:`Need` members, described in
:data:`NEEDS`; the live pipeline, ``fedsim.attacks.pipeline``, supplies each need or skips the method),
``applies(update)`` (a reason the method does not apply to this update, read from the update alone, or ``None``),
the callable ``run``, and what the method reports: ``signals`` (what the server saw that it always uses) and
``trace_signals`` (how it reads its own trace live: the signal lines of how it tuned itself). The generic pipeline
asks the record; it knows no method by name.

Each attack family keeps its own :class:`Registry` (``fedsim.attacks.labels.LABEL_METHODS``,
``fedsim.attacks.inversion.INVERSION_METHODS``, which also holds the generative methods), with this one record type.
A registry knows the config key its names are written under, and looking a name up is the one check of a
method name: an unknown one is a one-line ``ConfigError`` naming that key and the valid choices
(``fedsim.evaluation.attacking.plan_from_config`` looks every configured name up once, when the config is
loaded). ``Registry.register`` is the public way in for a method defined outside the project (a test, later a
user's plugin module).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, Iterable, Optional

from fedsim.core.errors import ConfigError
from fedsim.core.suggest import did_you_mean
from fedsim.core.types import ClientUpdate

KINDS = ("label", "inversion", "generative")

class Need(StrEnum):
    """What a method may need beyond the model and the (fake) gradient; the pipeline supplies each one
    (``fedsim.attacks.pipeline.need_options``) or, where the update cannot, skips the method as not applicable.
    A member equals its text (``Need.PUBLIC_SPLIT == "public split"``), as records and plugins wrote it before."""

    PUBLIC_SPLIT = "public split"
    CLIENT_SCHEDULE = "client schedule"
    DP_SGD_CLIP_NORM = "DP-SGD clip norm"
    TRAINED_PRIOR = "trained prior"
    BUFFERS = "buffers"
    DEFENSE_SETTINGS = "defense settings"
    CALIBRATION_CACHE = "calibration cache"


#: each :class:`Need`, described (``fedsim list``)
NEEDS: dict[Need, str] = {
    Need.PUBLIC_SPLIT: "the server's public labelled split (held-out half of the test split), option aux=(x, y)",
    Need.CLIENT_SCHEDULE: "the client's lr, local steps and local batch size as the server configured them",
    Need.DP_SGD_CLIP_NORM: "DP-SGD's per-example clipping norm (public: the server configured it), clip_norm=",
    Need.TRAINED_PRIOR: "a generative prior trained on the public split (attack.prior_path / prior_autotrain)",
    Need.BUFFERS: "the BatchNorm running statistics the server sent (the model's buffers before training)",
    Need.DEFENSE_SETTINGS: "the client-side update defenses in force (public: the server configured them), "
                        "shadow_defense= (fedsim.attacks.defense_view; omitted when none is in force)",
    Need.CALIBRATION_CACHE: "the attack runner's cache of calibrations made from public data and the model "
                         "(fedsim.attacks.inversion.calibration), calibration_cache=; omitted when it keeps none",
}

YEAR = re.compile(r"\b(19|20)\d\d\b")


def always(update: ClientUpdate) -> Optional[str]:
    """The default ``applies``: no reason to skip."""
    return None


@dataclass(frozen=True)
class AttackMethod:
    """A registered attack method; ``run`` is called by its family's entry point (``restore_labels``: ``run(model,
    gradients, num_samples, **options)``; ``invert``: ``run(model=..., gradients=..., ...)``)."""

    name: str
    kind: str
    paper: str
    summary: str
    run: Callable[..., Any] = field(compare=False)
    needs: tuple[Need, ...] = ()
    applies: Callable[[ClientUpdate], Optional[str]] = field(default=always, compare=False)
    #: ``run`` takes ``return_result=True`` and then returns an ``InversionTrace`` (engine, generative and self-tuned
    #: inversion methods); the pipeline reads the assigned labels and the tuning record from it
    traces: bool = False
    #: what the server saw that the method always uses besides the gradient (``InversionResult.signals``; e.g. a
    #: generative method's prior is trained on the public split), beyond what its options show
    signals: tuple[str, ...] = ()
    #: ``trace_signals(trace, k)``: the signal lines of how the method tuned itself, read from its own trace
    #: (``InversionTrace.options``); None: nothing to read
    trace_signals: Optional[Callable[[Any, int], list[str]]] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind {self.kind!r} is not one of {KINDS}")
        unknown = [n for n in self.needs if n not in NEEDS]
        if unknown:
            raise ValueError(f"{self.name}: needs {unknown} are not among {sorted(n.value for n in NEEDS)}")
        object.__setattr__(self, "needs", tuple(Need(n) for n in self.needs))  # a plugin's strings, typed
        if not YEAR.search(self.paper):
            raise ValueError(f"{self.name}: paper {self.paper!r} names no year")
        if not callable(self.run) or not callable(self.applies):
            raise ValueError(f"{self.name}: run and applies must be callable")

    @property
    def spec(self) -> Any:
        """The engine spec of an optimisation method (``fedsim.attacks.inversion.InversionSpec``), else ``None``."""
        return getattr(self.run, "spec", None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(*args, **kwargs)


class Registry(dict):
    """name -> :class:`AttackMethod` for one attack family; ``key`` is the config key its names are written under
    and ``choices`` the extra words that key accepts (``none``)."""

    def __init__(self, key: str, kinds: tuple[str, ...], records: Iterable[AttackMethod] = (),
                 choices: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.key, self.kinds, self.choices = key, kinds, choices
        for record in records:
            self.register(record)

    def register(self, record: AttackMethod) -> AttackMethod:
        """Add ``record`` (a new name of one of this registry's kinds); returns it."""
        if not isinstance(record, AttackMethod):
            raise TypeError(f"{self.key}: register an AttackMethod, got {type(record).__name__}")
        if record.kind not in self.kinds:
            raise ValueError(f"{self.key}: {record.name!r} is a {record.kind} method; this registry holds {self.kinds}")
        if record.name in self:
            raise ValueError(f"{self.key}: {record.name!r} is already registered")
        self[record.name] = record
        return record

    def resolve(self, name: str) -> AttackMethod:
        """The record of ``name``; an unknown name is the one-line ``ConfigError`` of ``__missing__``."""
        return self[name]

    def __missing__(self, name: str) -> AttackMethod:
        """The one check of a method name: unknown -> one-line ``ConfigError`` naming the key and the choices."""
        valid = [*self.choices, *sorted(self)]
        raise ConfigError(f"{self.key}: {name!r} is not one of {', '.join(valid)}{did_you_mean(name, valid)}")

    def needing(self, need: Need | str) -> set[str]:
        """Names of the methods that declare ``need``."""
        return {name for name, record in self.items() if need in record.needs}
