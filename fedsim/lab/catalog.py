"""``fedsim list``: what can be configured, read from the registries themselves (a new method appears here
without an edit): label restoration methods (``fedsim.attacks.labels.registry``) and inversion methods including the
generative ones (``fedsim.attacks.inversion``), each from its ``fedsim.attacks.records.AttackMethod`` record (name, kind,
paper, summary, needs), datasets (``fedsim.core.data.DATASETS``), models (``fedsim.core.models.zoo``) and
the ``[defense.*]`` tables (``fedsim.core.defense``, one module each). Importing the attack registries imports torch; only
``fedsim list`` pays for it.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

KINDS = ("attacks", "labels", "inversion", "datasets", "models", "defenses")


@dataclass(frozen=True)
class Entry:
    """One listed item: ``name`` as written in a config, a one-line ``summary``, the ``paper`` where known."""

    kind: str
    name: str
    summary: str
    paper: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def _first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring on one line ('' when there is none)."""
    para = (doc or "").strip().split("\n\n")[0]
    return " ".join(para.split())


def _method_entry(group: str, m: Any) -> Entry:
    """The listing of one ``AttackMethod`` record."""
    return Entry(group, m.name, m.summary, m.paper, {"kind": m.kind, "needs": list(m.needs)})


def label_entries() -> list[Entry]:
    from fedsim.attacks.labels import LABEL_METHODS

    return [_method_entry("labels", m) for m in LABEL_METHODS.values()]


def inversion_entries() -> list[Entry]:
    from fedsim.attacks.inversion import INVERSION_METHODS

    return [_method_entry("inversion", m) for m in INVERSION_METHODS.values()]


def dataset_entries() -> list[Entry]:
    from fedsim.core.data import DATASETS

    out = []
    for name, loader in DATASETS.items():
        summary = _first_paragraph(loader.__doc__)
        if not summary and loader.__module__ == "fedsim.core.data.sources" and "torchvision" in inspect.getsource(loader):
            summary = "torchvision dataset read from data.data_dir (never downloaded)"
        out.append(Entry("datasets", name, summary))
    return out


def model_entries() -> list[Entry]:
    from fedsim.core.models.zoo import MODELS

    return [Entry("models", name, _first_paragraph(fn.__doc__)) for name, fn in MODELS.items()]


def defense_entries() -> list[Entry]:
    from fedsim.core.defense.registry import section_class  # the built-in tables and any registered defense's

    out = []
    for f in dataclasses.fields(section_class()):
        table = f.default_factory  # type: ignore[misc]
        summary = re.sub(r"^``\[[^\]]+\]``:\s*", "", _first_paragraph(table.__doc__))
        keys = {k.name: k.metadata.get("doc", "") for k in dataclasses.fields(table)}
        out.append(Entry("defenses", f"defense.{f.name}", summary, extra={"keys": keys}))
    return out


_SOURCES: dict[str, Callable[[], list[Entry]]] = {
    "labels": label_entries, "inversion": inversion_entries, "datasets": dataset_entries,
    "models": model_entries, "defenses": defense_entries,
}


def entries(kind: str) -> list[Entry]:
    """Every entry of ``kind`` (``attacks`` = labels + inversion)."""
    if kind == "attacks":
        return label_entries() + inversion_entries()
    return _SOURCES[kind]()


def render(kind: str, fmt: str) -> str:
    """The listing as ``text`` (one line per entry, grouped) or ``json`` ({kind: [entry, ...]})."""
    kinds = [kind] if kind != "all" else list(_SOURCES)
    groups = {k: entries(k) for k in kinds}
    if fmt == "json":
        return json.dumps({k: [dataclasses.asdict(e) for e in v] for k, v in groups.items()}, indent=2)
    lines: list[str] = []
    for k, items in groups.items():
        width = max((len(e.name) for e in items), default=0)
        lines.append(f"{k}:")
        for e in items:
            paper = f" [{e.paper}]" if e.paper and e.paper not in e.summary else ""
            needs = f" (needs: {', '.join(e.extra['needs'])})" if e.extra.get("needs") else ""
            lines.append(f"  {e.name:<{width}}  {e.summary}{paper}{needs}")
    return "\n".join(lines)
