"""Append-only JSON-lines results (``metrics.jsonl``, ``rejections.jsonl``) of a run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator, Mapping


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def append_jsonl(path: str | Path, row: Mapping[str, Any]) -> None:
    """Append one row as a single line (strict JSON: NaN/Inf become null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(_clean(dict(row)), allow_nan=False, sort_keys=False)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def read_jsonl(path: str | Path) -> Iterator[dict]:
    path = Path(path)
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
