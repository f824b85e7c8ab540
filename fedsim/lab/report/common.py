"""Helpers every report section uses: escaping, number formatting of untrusted values, image embedding,
section / figure / stat-card markup."""

from __future__ import annotations

import base64
import html
import math
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from fedsim.lab.report.data import RunData
from fedsim.core.lists import comma_list
from fedsim.core.rows import finite_float as num

MAX_GRIDS = 24
MAX_LABEL_ROWS = 300
MAX_LIST_ROWS = 200
MAX_IMAGE_BYTES = 8 * 1024 * 1024
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def e(v: Any) -> str:
    """HTML-escape any value (quotes too)."""
    return html.escape(str(v), quote=True)


def integer(v: Any) -> int | None:
    f = num(v)
    return int(f) if f is not None and f == int(f) else None


def fmt(v: Any, spec: str = ".3f", missing: str = "–") -> str:
    f = num(v)
    if f is None:
        return missing
    out = format(f, spec)
    return out[1:] if out.startswith("-") and float(out) == 0 else out  # no "-0.00"


def eps_value(v: Any) -> float | None:
    """An epsilon as a number, +inf kept (a mechanism without noise: no guarantee; rows spell it "inf")."""
    if isinstance(v, str) and v in ("inf", "+inf"):
        return math.inf
    f = None if isinstance(v, bool) else num(v)
    return math.inf if f is None and isinstance(v, float) and math.isinf(v) and v > 0 else f


def fmt_eps(v: Any, spec: str = ".3f", missing: str = "–") -> str:
    """An epsilon for a table: the number, or "∞" for an infinite one."""
    f = eps_value(v)
    return "∞" if f == math.inf else fmt(f, spec, missing)


def pct(v: Any, missing: str = "–") -> str:
    f = num(v)
    return missing if f is None else f"{100 * f:.0f}%"


def mean(vals: Iterable[Any]) -> float | None:
    xs = [x for x in (num(v) for v in vals) if x is not None]
    return statistics.fmean(xs) if xs else None


def ok(row: Any) -> bool:
    return getattr(row, "ok", None) is True


def counts(v: Any) -> list[int] | None:
    if not isinstance(v, list) or not v or len(v) > 10_000:
        return None
    out = [integer(x) for x in v]
    return None if any(x is None or x < 0 for x in out) else out  # type: ignore[misc]


def short(v: Any, n: int = 300) -> str:
    """Escaped, cut to ``n`` characters."""
    return e(str("" if v is None else v)[:n])


def or_q(v: Any) -> str:
    """Escaped value, ``?`` when missing."""
    return e("?" if v is None else v)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def embed_image(run_dir: Path, rel: Any) -> str | None:
    """A data URI for a PNG inside the run folder, or None (missing, outside the folder, not a PNG, too big)."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        return None
    try:
        root = run_dir.resolve()
        path = (run_dir / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file() or path.stat().st_size > MAX_IMAGE_BYTES:
            return None
        raw = path.read_bytes()
    except (OSError, ValueError):
        return None
    return data_uri(raw) if raw.startswith(_PNG_MAGIC) else None


def cfg(data: RunData, section: str, key: str, default: Any = None) -> Any:
    sec = data.config.get(section)
    return sec.get(key, default) if isinstance(sec, dict) else default


def defense_items(data: RunData) -> list[tuple[str, Any]]:
    """``[defense]`` as (key, value) pairs: flat keys as they are, one table per mechanism as ``table.key``."""
    defense = data.config.get("defense")
    if not isinstance(defense, dict):
        return []
    out: list[tuple[str, Any]] = []
    for k, v in defense.items():
        if isinstance(v, dict):
            out += [(f"{k}.{kk}", vv) for kk, vv in v.items() if not isinstance(vv, dict)]
        else:
            out.append((k, v))
    return out


def methods_in_order(rows: Sequence[Any], configured: Any) -> list[str]:
    """Methods of ``rows``: first those named in the config (in its order), then the others as they appear."""
    seen = [str(r.method) for r in rows if getattr(r, "method", None) is not None]
    order: list[str] = []
    if isinstance(configured, (str, list, tuple)):
        order = list(comma_list(configured))
    out = [m for m in order if m in seen]
    for m in seen:
        if m not in out:
            out.append(m)
    return out


def section(anchor: str, n: int, title: str, body: str, lead: str = "") -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section id="{anchor}"><h2><span class="num">{n}.</span>{e(title)}</h2>{lead_html}{body}</section>'


def figure(png: bytes | None, alt: str, narrow: bool = False) -> str:
    if not png:
        return ""
    cls = "figure narrow" if narrow else "figure"
    return f'<div class="{cls}"><img alt="{e(alt)}" src="{data_uri(png)}"></div>'


def stat(label: str, value: str, sub: str, cls: str = "", verdict: str = "") -> str:
    """A headline card; ``verdict``: its distance from chance in words (:mod:`fedsim.lab.report.verdict`), shown
    under the number in the card's colour."""
    words = f'<div class="verdict {cls}">{e(verdict)}</div>' if verdict else ""
    return (f'<div class="stat {cls}"><div class="label">{e(label)}</div><div class="value">{e(value)}</div>'
            f'{words}<div class="sub">{e(sub)}</div></div>')


def table(head: Sequence[str], rows: Iterable[str], numeric: Sequence[bool] = ()) -> str:
    """A scrollable table; ``head`` are plain texts (escaped here), ``rows`` ready-made ``<tr>`` markup."""
    ths = "".join(f'<th{" class=n" if i < len(numeric) and numeric[i] else ""}>{e(h)}</th>'
                  for i, h in enumerate(head))
    return (f'<div class="tablewrap"><table><thead><tr>{ths}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f'</table></div>')


def setting(r: Any) -> str:
    """One line on what the server knew of an attacked update (algorithm, batch, steps, seconds)."""
    parts = []
    if getattr(r, "algorithm", None):
        parts.append(str(r.algorithm))
    if integer(getattr(r, "batch_size", None)) is not None:
        parts.append(f"batch {integer(r.batch_size)}")
    if integer(getattr(r, "local_steps", None)) is not None:
        n = integer(r.local_steps)
        parts.append(f"{n} local step{'s' if n != 1 else ''}")
    k = integer(getattr(r, "num_images", None) or getattr(r, "num_samples", None))
    if k is not None:
        parts.append(f"{k} image{'s' if k != 1 else ''} attacked")
    if getattr(r, "label_source", None):
        parts.append(f"labels from {r.label_source}")
    if num(getattr(r, "seconds", None)) is not None:
        parts.append(f"{num(r.seconds):.1f} s")
    return " · ".join(parts)


def ranked_inversions(rows: Sequence[Any]) -> list[Any]:
    """Successful inversions, best PSNR (then SSIM) first."""
    return sorted((r for r in rows if ok(r)), key=lambda r: (num(r.psnr) is None, -(num(r.psnr) or 0.0),
                                                            -(num(r.ssim) or 0.0)))
