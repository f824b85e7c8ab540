"""``fedsim report RUN_DIR``: one self-contained ``RUN_DIR/report.html`` for a run folder.

The page inlines everything (CSS, PNG figures and reconstruction grids as base64 data URIs); it loads no
fonts, scripts or images from anywhere, so it can be mailed or archived as one file.

Inputs are read defensively: any of ``config.toml``, ``metrics.jsonl``, ``rejections.jsonl``,
``captures/`` and ``images/`` may be missing, empty or cut off mid-line (a run still in progress); bad lines
are skipped and counted, unknown row kinds are ignored, and nothing is ever unpickled. Image paths from
``metrics.jsonl`` are only embedded when they point at a PNG file inside the run folder.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from fedsim.lab.report_data import RunData, load_run
from fedsim.lab.report_style import CSS

MAX_GRIDS = 24
MAX_LABEL_ROWS = 300
MAX_LIST_ROWS = 200
MAX_IMAGE_BYTES = 8 * 1024 * 1024
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------ helpers
def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(v: Any) -> int | None:
    f = _num(v)
    return int(f) if f is not None and f == int(f) else None


def _fmt(v: Any, spec: str = ".3f", missing: str = "–") -> str:
    f = _num(v)
    if f is None:
        return missing
    out = format(f, spec)
    return out[1:] if out.startswith("-") and float(out) == 0 else out  # no "-0.00"


def _pct(v: Any, missing: str = "–") -> str:
    f = _num(v)
    return missing if f is None else f"{100 * f:.0f}%"


def _mean(vals: Iterable[Any]) -> float | None:
    xs = [x for x in (_num(v) for v in vals) if x is not None]
    return statistics.fmean(xs) if xs else None


def _ok(row: Mapping) -> bool:
    return row.get("ok") is True


def _counts(v: Any) -> list[int] | None:
    if not isinstance(v, list) or not v or len(v) > 10_000:
        return None
    out = [_int(x) for x in v]
    return None if any(x is None or x < 0 for x in out) else out  # type: ignore[misc]


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _embed_image(run_dir: Path, rel: Any) -> str | None:
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
    return _data_uri(raw) if raw.startswith(_PNG_MAGIC) else None


def _cfg(data: RunData, section: str, key: str, default: Any = None) -> Any:
    sec = data.config.get(section)
    return sec.get(key, default) if isinstance(sec, dict) else default


def _methods_in_order(rows: Sequence[Mapping], configured: Any) -> list[str]:
    seen = [str(r.get("method")) for r in rows if r.get("method") is not None]
    order: list[str] = []
    if isinstance(configured, str):
        order = [m.strip() for m in configured.split(",") if m.strip()]
    out = [m for m in order if m in seen]
    for m in seen:
        if m not in out:
            out.append(m)
    return out


def _multiset(counts: Sequence[int]) -> str:
    return " ".join(f"{k}×{c}" for c, k in enumerate(counts) if k > 0) or "–"


# ------------------------------------------------------------------------------------------------ sections
def _section(anchor: str, num: int, title: str, body: str, lead: str = "") -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section id="{anchor}"><h2><span class="num">{num}.</span>{_e(title)}</h2>{lead_html}{body}</section>'


def _figure(png: bytes | None, alt: str, narrow: bool = False) -> str:
    if not png:
        return ""
    cls = "figure narrow" if narrow else "figure"
    return f'<div class="{cls}"><img alt="{_e(alt)}" src="{_data_uri(png)}"></div>'


def _config_table(data: RunData) -> str:
    c = lambda s, k, d=None: _cfg(data, s, k, d)  # noqa: E731
    partition = c("data", "partition")
    if partition == "dirichlet" and c("data", "alpha") is not None:
        partition = f"dirichlet (α = {c('data', 'alpha')})"
    elif partition == "shards" and c("data", "shards_per_client") is not None:
        partition = f"shards ({c('data', 'shards_per_client')} per client)"
    model = c("model", "name")
    if model is not None and c("model", "activation"):
        model = f"{model} / {c('model', 'activation')}"
    algo = c("train", "algorithm")
    attack_on = c("attack", "enabled")
    attacks = None
    if c("attack", "label_methods") is not None or c("attack", "inversion") is not None:
        attacks = (f"labels: {str(c('attack', 'label_methods', '–')).replace(',', ', ')} · "
                   f"images: {str(c('attack', 'inversion', '–')).replace(',', ', ')}")
        if attack_on is False:
            replayed = any(r.get("replay") for r in data.labels + data.inversions)
            attacks += " (attacked offline by fedsim attack)" if replayed else " (attack off during the run)"
    items = [
        ("dataset", c("data", "dataset")), ("partition", partition), ("model", model),
        ("algorithm", algo), ("learning rate", c("train", "lr")), ("local epochs", c("train", "local_epochs")),
        ("batch size", c("train", "batch_size")), ("rounds", c("run", "num_rounds")),
        ("clients", c("run", "num_clients")), ("seed", c("run", "seed")), ("attacks", attacks),
    ]
    defense = data.config.get("defense")
    if isinstance(defense, dict) and defense:
        items.append(("defense", ", ".join(f"{k} = {v}" for k, v in defense.items() if not isinstance(v, dict))))
    cells = [f'<div{" class=wide" if k in ("attacks", "defense") else ""}><span class="k">{_e(k)}</span>'
             f'<span class="v">{_e(v)}</span></div>' for k, v in items if v is not None and v != ""]
    if not cells:
        return ""
    return f'<div class="cfg">{"".join(cells)}</div>'


def _howto() -> str:
    return """
<div class="howto">
 <div><b>“We only share gradients.”</b>In federated learning the images never leave the client; only model
 updates do. This page shows what a server that merely <i>looks at</i> those updates can get back.</div>
 <div><b>Label restoration</b>From one update the server guesses which classes were in the client's batch and
 how many of each. <i>Labels recovered</i> = share of the batch's labels guessed right (100% = every label).</div>
 <div><b>Image reconstruction</b>The server searches for images whose gradient matches the captured one.
 <i>PSNR</i> (dB): above ~20 the digits are usually recognisable. <i>SSIM</i>: 0 = unrelated, 1 = identical.</div>
 <div><b>FedSGD vs FedAvg</b>FedSGD sends one gradient of one batch: the hardest case to protect. FedAvg sends
 weights after several local steps, which blurs the signal, but often not enough.</div>
</div>"""


def _headline(data: RunData) -> str:
    stats: list[str] = []
    util = sorted((r for r in data.utility if _int(r.get("round")) is not None), key=lambda r: _int(r["round"]))
    final = next((r for r in reversed(util) if _num(r.get("test_accuracy")) is not None), None)
    if final is not None:
        first = next((r for r in util if _num(r.get("test_accuracy")) is not None), None)
        sub = f"after round {_int(final['round'])}"
        if first is not None and first is not final:
            sub += f" (round {_int(first['round'])}: {_pct(first.get('test_accuracy'))})"
        gain = (_num(final.get("test_accuracy")) or 0) - (_num(first.get("test_accuracy")) or 0) if first else 0
        if first is not None and first is not final and gain <= 0.01:
            sub += " · not learning?"
        stats.append(_stat("model test accuracy", _pct(final.get("test_accuracy")), sub,
                           "good" if gain > 0.05 else ""))
    for m in _methods_in_order(data.labels, _cfg(data, "attack", "label_methods")):
        rows = [r for r in data.labels if str(r.get("method")) == m]
        ok = [r for r in rows if _ok(r)]
        inst = _mean(r.get("label_instacc") for r in ok)
        le = _mean(r.get("label_leacc") for r in ok)
        sub = f"{len(ok)} of {len(rows)} attacks ran · class presence {_pct(le)}"
        stats.append(_stat(f"labels recovered · {m}", _pct(inst), sub, "alarm" if (inst or 0) >= 0.5 else ""))
    for m in _methods_in_order(data.inversions, _cfg(data, "attack", "inversion")):
        rows = [r for r in data.inversions if str(r.get("method")) == m]
        ok = [r for r in rows if _ok(r)]
        psnr = _mean(r.get("psnr") for r in ok)
        ssim = _mean(r.get("ssim") for r in ok)
        value = "–" if psnr is None else f"{psnr:.1f} dB"
        sub = f"mean PSNR · SSIM {_fmt(ssim, '.2f')} · {len(ok)} of {len(rows)} ran"
        stats.append(_stat(f"images rebuilt · {m}", value, sub, "alarm" if (psnr or 0) >= 20 else ""))
    if data.num_captures:
        stats.append(_stat("updates captured", str(data.num_captures),
                           f"over {data.capture_rounds} round{'s' if data.capture_rounds != 1 else ''}", ""))
    failed = sum(1 for r in data.labels + data.inversions if not _ok(r))
    if data.labels or data.inversions or data.rejections:
        stats.append(_stat("failed attacks · rejected replies", f"{failed} · {len(data.rejections)}",
                           "see the last section", ""))
    out = f'<div class="stats">{"".join(stats)}</div>' if stats else ""
    best = _best_reconstruction(data)
    if best:
        out += f'<h3>Best reconstruction</h3>{best}'
    return out


def _stat(label: str, value: str, sub: str, cls: str) -> str:
    return (f'<div class="stat {cls}"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
            f'<div class="sub">{_e(sub)}</div></div>')


def _ranked_inversions(data: RunData) -> list[dict]:
    ok = [r for r in data.inversions if _ok(r)]
    return sorted(ok, key=lambda r: (_num(r.get("psnr")) is None, -(_num(r.get("psnr")) or 0.0),
                                     -(_num(r.get("ssim")) or 0.0)))


def _best_reconstruction(data: RunData) -> str:
    for r in _ranked_inversions(data):
        uri = _embed_image(data.run_dir, r.get("image"))
        if uri is None:
            continue
        return (f'<div class="card best"><img alt="best reconstruction" src="{uri}"><div>'
                f'<div class="stat alarm" style="border:0;padding:0"><div class="label">PSNR · SSIM</div>'
                f'<div class="value">{_fmt(r.get("psnr"), ".1f")} dB · {_fmt(r.get("ssim"), ".2f")}</div></div>'
                f'<p>Round {_e(r.get("round", "?"))}, client {_e(r.get("client", "?"))}, method '
                f'<b>{_e(r.get("method", "?"))}</b>: <b>top row</b> the client\'s real images, <b>bottom row</b> what '
                f'the server rebuilt from the captured update alone.</p>'
                f'<p class="muted">{_e(_setting(r))}</p></div></div>')
    return ""


def _setting(r: Mapping) -> str:
    parts = []
    if r.get("algorithm"):
        parts.append(str(r["algorithm"]))
    if _int(r.get("batch_size")) is not None:
        parts.append(f"batch {_int(r['batch_size'])}")
    if _int(r.get("local_steps")) is not None:
        n = _int(r["local_steps"])
        parts.append(f"{n} local step{'s' if n != 1 else ''}")
    k = _int(r.get("num_images", r.get("num_samples")))
    if k is not None:
        parts.append(f"{k} image{'s' if k != 1 else ''} attacked")
    if r.get("label_source"):
        parts.append(f"labels from {r['label_source']}")
    if _num(r.get("seconds")) is not None:
        parts.append(f"{_num(r['seconds']):.1f} s")
    return " · ".join(parts)


def _restored_chips(true: list[int] | None, rest: list[int]) -> str:
    chips = []
    n = max(len(rest), len(true or []))
    for c in range(n):
        r = rest[c] if c < len(rest) else 0
        t = true[c] if true is not None and c < len(true) else None
        if r > 0:
            if t is None:
                cls = "t"
            elif r == t:
                cls = "hit"
            elif t > 0:
                cls = "off"
            else:
                cls = "bad"
            chips.append(f'<span class="chip {cls}">{r}×{c}</span>')
        elif t:
            chips.append(f'<span class="chip miss" title="missed">{t}×{c}</span>')
    return "".join(chips) or '<span class="muted">none</span>'


def _score_span(v: Any) -> str:
    f = _num(v)
    if f is None:
        return ""
    cls = "hi" if f >= 0.9 else "mid" if f >= 0.5 else "lo"
    return f'<span class="score {cls}">{100 * f:.0f}%</span>'


def _label_table(data: RunData) -> str:
    if not data.labels:
        return '<p class="muted">No label restoration rows in metrics.jsonl.</p>'
    methods = _methods_in_order(data.labels, _cfg(data, "attack", "label_methods"))
    groups: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in data.labels:
        groups[(_int(r.get("round")), _int(r.get("client")))][str(r.get("method"))] = r
    keys = sorted(groups, key=lambda k: (k[0] is None, k[0] or 0, k[1] is None, k[1] or 0))
    head = "".join(f"<th>{_e(m)}</th>" for m in methods)
    body = []
    for key in keys[:MAX_LABEL_ROWS]:
        by_m = groups[key]
        true = next((t for t in (_counts(r.get("true_counts")) for r in by_m.values()) if t), None)
        any_row = next(iter(by_m.values()))
        k = _int(any_row.get("num_samples"))
        true_html = ("".join(f'<span class="chip t">{n}×{c}</span>' for c, n in enumerate(true) if n > 0)
                     if true else '<span class="muted">unknown</span>')
        cells = []
        for m in methods:
            r = by_m.get(m)
            if r is None:
                cells.append('<td class="muted">–</td>')
            elif not _ok(r):
                cells.append(f'<td><span class="chip bad">failed</span> <span class="err">{_e(str(r.get("error", ""))[:120])}</span></td>')
            else:
                rest = _counts(r.get("restored_counts"))
                chips = _restored_chips(true, rest) if rest is not None else '<span class="muted">no counts</span>'
                if r.get("presence_only"):
                    chips += '<span class="muted" title="this method only says which classes are present"> (classes only)</span>'
                if r.get("score_error"):
                    chips += f'<div class="err">not scored: {_e(str(r["score_error"])[:120])}</div>'
                cells.append(f"<td>{chips}{_score_span(r.get('label_instacc'))}</td>")
        setting = []
        if any_row.get("algorithm"):
            setting.append(str(any_row["algorithm"]))
        if _int(any_row.get("batch_size")) is not None:
            setting.append(f"B={_int(any_row['batch_size'])}")
        if _int(any_row.get("local_steps")) is not None:
            setting.append(f"T={_int(any_row['local_steps'])}")
        body.append(
            f'<tr><td class="n">{_e(key[0] if key[0] is not None else "?")}</td>'
            f'<td class="n">{_e(key[1] if key[1] is not None else "?")}</td>'
            f'<td class="n">{_e(k if k is not None else "?")}</td><td class="muted" style="white-space:nowrap">'
            f'{_e(" ".join(setting))}</td><td>{true_html}</td>{"".join(cells)}</tr>')
    more = ""
    if len(keys) > MAX_LABEL_ROWS:
        more = f'<p class="muted">Showing the first {MAX_LABEL_ROWS} of {len(keys)} attacked updates.</p>'
    legend = ('<p class="legend">Read <span class="chip t">3×0</span> as “three images of class 0”. Restored '
              'counts: <span class="chip hit">right count</span> <span class="chip off">class right, count '
              'wrong</span> <span class="chip bad">class not in the batch</span> <span class="chip miss">missed'
              '</span>. The percentage is the share of the batch\'s labels recovered.</p>')
    return (f'{legend}<div class="tablewrap"><table><thead><tr><th class="n">round</th><th class="n">client</th>'
            f'<th class="n">K</th><th>setting</th><th>true labels</th>{head}</tr></thead><tbody>{"".join(body)}'
            f'</tbody></table></div>{more}')


def _gallery(data: RunData) -> str:
    ranked = _ranked_inversions(data)
    if not ranked:
        return '<p class="muted">No successful image reconstructions in metrics.jsonl.</p>'
    figs = []
    for i, r in enumerate(ranked[:MAX_GRIDS], 1):
        uri = _embed_image(data.run_dir, r.get("image"))
        img = (f'<img alt="reconstruction round {_e(r.get("round"))} client {_e(r.get("client"))}" src="{uri}">'
               if uri else f'<div class="placeholder">image not found: {_e(r.get("image", "none"))}</div>')
        figs.append(
            f'<figure>{img}<figcaption><span class="rank">#{i}</span><b>PSNR {_fmt(r.get("psnr"), ".1f")} dB · '
            f'SSIM {_fmt(r.get("ssim"), ".2f")}</b> · round {_e(r.get("round", "?"))}, client '
            f'{_e(r.get("client", "?"))}, {_e(r.get("method", "?"))}<br>{_e(_setting(r))}</figcaption></figure>')
    more = ""
    if len(ranked) > MAX_GRIDS:
        more = f'<p class="muted">Showing the best {MAX_GRIDS} of {len(ranked)} reconstructions.</p>'
    return f'<div class="gallery">{"".join(figs)}</div>{more}'


def _leakage(data: RunData) -> str:
    from fedsim.lab import plots

    lab = [r for r in data.labels if _ok(r)]
    inv = [r for r in data.inversions if _ok(r)]
    if not lab and not inv:
        return '<p class="muted">No successful attacks to plot.</p>'
    out = [_figure(plots.leakage_plot(lab, inv, "round", "round", "Leakage by round"), "leakage by round")]
    both = lab + inv
    if plots.varies(both, "batch_size"):
        out.append(_figure(plots.leakage_plot(lab, inv, "batch_size", "client batch size",
                                              "Leakage vs batch size (more images per update)"),
                           "leakage vs batch size"))
    if plots.varies(both, "local_steps"):
        out.append(_figure(plots.leakage_plot(lab, inv, "local_steps", "local steps per update",
                                              "Leakage vs local steps (FedAvg)"), "leakage vs local steps"))
    notes = []
    if not plots.varies(both, "batch_size"):
        notes.append("batch size")
    if not plots.varies(both, "local_steps"):
        notes.append("local steps")
    if notes:
        out.append(f'<p class="muted">This run does not vary {" or ".join(notes)}, so there is no plot against '
                   f'{"them" if len(notes) > 1 else "it"}.</p>')
    return "".join(out)


def _problems(data: RunData) -> str:
    parts = []
    failed = [r for r in data.labels + data.inversions if not _ok(r)]
    if failed:
        reasons = Counter(str(r.get("error", "no reason given"))[:200] for r in failed)
        rows = "".join(f'<tr><td class="n">{n}</td><td class="err">{_e(reason)}</td></tr>'
                       for reason, n in reasons.most_common(MAX_LIST_ROWS))
        detail = "".join(
            f'<tr><td>{_e(r.get("kind"))}</td><td class="n">{_e(r.get("round", "?"))}</td>'
            f'<td class="n">{_e(r.get("client", "?"))}</td><td>{_e(r.get("method", "?"))}</td>'
            f'<td class="err">{_e(str(r.get("error", ""))[:300])}</td></tr>' for r in failed[:MAX_LIST_ROWS])
        parts.append(f'<h3>Failed attacks ({len(failed)})</h3><div class="tablewrap"><table><thead><tr>'
                     f'<th class="n">count</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table></div>'
                     f'<details><summary>every failed attack</summary><div class="tablewrap"><table><thead><tr>'
                     f'<th>kind</th><th class="n">round</th><th class="n">client</th><th>method</th><th>error</th>'
                     f'</tr></thead><tbody>{detail}</tbody></table></div></details>')
    else:
        parts.append('<h3>Failed attacks</h3><p class="muted">None.</p>')
    unscored = [r for r in data.labels + data.inversions if _ok(r) and r.get("score_error")]
    if unscored:
        rows = "".join(
            f'<tr><td>{_e(r.get("kind"))}</td><td class="n">{_e(r.get("round", "?"))}</td>'
            f'<td class="n">{_e(r.get("client", "?"))}</td><td>{_e(r.get("method", "?"))}</td>'
            f'<td class="err">{_e(str(r.get("score_error"))[:300])}</td></tr>' for r in unscored[:MAX_LIST_ROWS])
        parts.append(f'<h3>Attacks that ran but could not be scored ({len(unscored)})</h3><p class="lead">Usually '
                     f'the ground truth (audit/) for that update is missing.</p><div class="tablewrap"><table>'
                     f'<thead><tr><th>kind</th><th class="n">round</th><th class="n">client</th><th>method</th>'
                     f'<th>reason</th></tr></thead><tbody>{rows}</tbody></table></div>')
    if data.skipped:
        rows = "".join(
            f'<tr><td class="n">{_e(r.get("round", "?"))}</td><td class="n">{_e(r.get("client", "?"))}</td>'
            f'<td>{_e(r.get("method", ""))}</td><td class="err">{_e(str(r.get("reason", ""))[:300])}</td></tr>'
            for r in data.skipped[:MAX_LIST_ROWS])
        parts.append(f'<h3>Skipped attacks ({len(data.skipped)})</h3><div class="tablewrap"><table><thead><tr>'
                     f'<th class="n">round</th><th class="n">client</th><th>method</th><th>reason</th></tr></thead>'
                     f'<tbody>{rows}</tbody></table></div>')
    if data.rejections:
        rows = "".join(
            f'<tr><td class="n">{_e(r.get("round", "?"))}</td><td class="n">{_e(r.get("node", "?"))}</td>'
            f'<td class="n">{_e(r.get("client") if r.get("client") is not None else "?")}</td>'
            f'<td class="err">{_e(str(r.get("reason", ""))[:300])}</td></tr>' for r in data.rejections[:MAX_LIST_ROWS])
        parts.append(f'<h3>Rejected client replies ({len(data.rejections)})</h3><p class="lead">Malformed '
                     f'replies the server refused to aggregate (and did not attack).</p><div class="tablewrap">'
                     f'<table><thead><tr><th class="n">round</th><th class="n">node</th><th class="n">client</th>'
                     f'<th>reason</th></tr></thead><tbody>{rows}</tbody></table></div>')
    else:
        parts.append('<h3>Rejected client replies</h3><p class="muted">None.</p>')
    notes = []
    for name, n in data.bad_lines.items():
        notes.append(f"{n} unreadable line{'s' if n != 1 else ''} in {name} skipped (a run still writing?)")
    if data.superseded:
        notes.append(f"{data.superseded} earlier attack row{'s' if data.superseded != 1 else ''} superseded by a "
                     f"later row for the same round, client and method (re-run with fedsim attack)")
    if data.unknown_kinds:
        notes.append("rows of unknown kinds ignored: " + ", ".join(f"{k} ({n})" for k, n in
                                                                   data.unknown_kinds.most_common()))
    if data.config_error:
        notes.append(f"config.toml could not be read: {data.config_error}")
    if notes:
        parts.append('<div class="notice">' + "<br>".join(_e(n) for n in notes) + "</div>")
    return "".join(parts)


def _full_config(data: RunData) -> str:
    if not data.config:
        return ""
    lines = []
    for sec, vals in data.config.items():
        if isinstance(vals, dict):
            lines.append(f"[{sec}]")
            lines += [f"{k} = {json.dumps(v, default=str)}" for k, v in vals.items()]
            lines.append("")
        else:
            lines.append(f"{sec} = {json.dumps(vals, default=str)}")
    return f'<details><summary>full resolved config</summary><pre>{_e(chr(10).join(lines))}</pre></details>'


# ------------------------------------------------------------------------------------------------ page
def render_html(data: RunData) -> str:
    from fedsim.lab import plots

    name = _cfg(data, "run", "name") or data.run_dir.name or "run"
    algo = _cfg(data, "train", "algorithm")
    dataset = _cfg(data, "data", "dataset")
    subtitle_bits = [b for b in (dataset, algo and str(algo).upper(),
                                 _cfg(data, "run", "num_clients") and f"{_cfg(data, 'run', 'num_clients')} clients",
                                 _cfg(data, "run", "num_rounds") and f"{_cfg(data, 'run', 'num_rounds')} rounds") if b]
    sections: list[str] = []
    n = 0

    def add(anchor, title, body, lead=""):
        nonlocal n
        n += 1
        sections.append(_section(anchor, n, title, body, lead))

    empty = ""
    if data.empty:
        empty = (f'<div class="notice empty"><b>Nothing was found in this folder.</b> No config.toml, metrics.jsonl, '
                 f'rejections.jsonl, captures or images were found in <code>{_e(data.run_dir)}</code>. Run '
                 f'<code>fedsim run CONFIG --out DIR</code> first, then <code>fedsim report DIR</code>.</div>')
    elif not (data.labels or data.inversions):
        empty = ('<div class="notice"><b>No attack results yet.</b> This run has no label or inversion rows in '
                 'metrics.jsonl (attacks off, or still running). Enable <code>[attack]</code> or run '
                 '<code>fedsim attack RUN_DIR</code>.</div>')

    add("threat", "The threat model in one picture",
        _figure(plots.threat_model_diagram(), "clients send updates to a curious server that aggregates and "
                "intercepts them, turns them into a fake gradient, restores labels and reconstructs images"),
        "Nobody hacks anything here: the server runs federated learning exactly as specified. It simply also "
        "keeps the individual updates it has to receive anyway, and attacks them offline.")
    add("headline", "Headline numbers", _headline(data) or '<p class="muted">No results to summarise.</p>',
        "Averages over every attacked update. Higher means more of the clients' private data leaked.")
    util = plots.utility_plot(data.utility) if data.utility else None
    add("utility", "Utility per round", _figure(util, "test accuracy and loss per round", narrow=True)
        or '<p class="muted">No utility rows in metrics.jsonl.</p>',
        "The federation's purpose: the global model's accuracy and loss on held-out test data after each round.")
    add("leakage", "How much leaks, and when", _leakage(data),
        "Light dots are single attacked updates, lines their mean. Leakage usually falls with more images per "
        "update and more local steps, and can change as the model trains.")
    add("labels", "Label restoration per client and round", _label_table(data),
        "For each captured update: the labels truly in the client's batch, and what each method restored from "
        "the update alone.")
    add("images", "Reconstructed images", _gallery(data),
        "Best first. In every grid the top row is the client's real batch and the bottom row the server's "
        "reconstruction, matched image by image.")
    add("problems", "Failures and rejections", _problems(data),
        "Attacks that crashed or were skipped, and client replies the server rejected.")

    toc = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in (
        ("threat", "Threat model"), ("headline", "Headline"), ("utility", "Utility"), ("leakage", "Leakage"),
        ("labels", "Labels"), ("images", "Images"), ("problems", "Failures")))
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    files = (f"{data.num_captures} captured updates, {data.num_images} images, {len(data.utility)} utility rows, "
             f"{len(data.labels)} label rows, {len(data.inversions)} inversion rows, "
             f"{len(data.rejections)} rejections")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fedsim report · {_e(name)}</title>
<style>{CSS}</style></head>
<body>
<header class="top"><div class="inner">
<div class="kicker">fedsim · privacy leakage report</div>
<h1>{_e(name)}</h1>
<p>{_e(" · ".join(str(b) for b in subtitle_bits)) or "run folder " + _e(data.run_dir.name)}</p>
<p style="margin-top:10px">Federated learning keeps the data on the clients and shares only model updates.
This report shows what an honest-but-curious server recovers from those updates: which labels were in a
client's batch, and what the images looked like.</p>
<nav class="toc">{toc}</nav>
</div></header>
<main>
{empty}
{_config_table(data)}
{_full_config(data)}
<h2 style="margin-top:30px">How to read this</h2>
{_howto()}
{"".join(sections)}
<footer>Generated {now} by <code>fedsim report</code> from <code>{_e(data.run_dir)}</code>: {_e(files)}.
Self-contained: no network access needed to view this file.</footer>
</main></body></html>
"""


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` and return its path (creates the folder if it does not exist)."""
    run_dir = Path(run_dir)
    data = load_run(run_dir)
    page = render_html(data)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "report.html"
    tmp = run_dir / ".report.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
