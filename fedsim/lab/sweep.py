"""``fedsim sweep SWEEP.toml --out DIR``: one federation per defense setting, leakage and utility side by side.

A sweep file::

    [sweep]
    base = "fedsgd_small.toml"           # a preset, relative to the sweep file (optional)
    parameter = "defense.noise_std"      # one swept key ...
    values = [0.0, 0.001, 0.01, 0.1]     # ... listed weakest -> strongest defense
    # or several keys swept together:  parameters = ["defense.dp_sgd", "defense.dp_sgd_noise"]
    #                                  values = [[false, 0.0], [true, 0.5], [true, 1.0]]
    [run]                                # any other section overrides the base preset
    num_clients = 3

Writes ``DIR/setting_XX/`` (one run folder each), ``DIR/sweep.jsonl`` (one row per setting in file order, i.e.
weakest -> strongest), ``DIR/sweep_*.png`` and ``DIR/sweep.html``. Rows: ``setting`` (the swept keys and values),
``test_accuracy`` (final round), ``label_leacc`` / ``label_lnacc`` (means over the attacked updates of the first
label method), ``psnr`` / ``ssim`` (means over inversions), ``epsilon`` (largest reported, where defined).
"""

from __future__ import annotations

import base64
import html
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fedsim.config import ConfigError, ExperimentConfig, flatten, from_flat, read_toml
from fedsim.rows import InversionRow, LabelRow, PrivacyRow, UtilityRow
from fedsim.runfolder import RunFolder

Runner = Callable[[ExperimentConfig, Path, bool], Path]


@dataclass(frozen=True)
class Sweep:
    name: str
    base: ExperimentConfig
    parameters: tuple[str, ...]
    settings: tuple[tuple[Any, ...], ...]
    label: str


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> Sweep:
    path = Path(path)
    nested = read_toml(path, "sweep file")
    spec = nested.pop("sweep", None)
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: needs a [sweep] section with parameter(s) and values")
    flat: dict[str, Any] = {}
    if spec.get("base"):
        base_path = (path.parent / spec["base"]).resolve()
        if not base_path.exists():
            base_path = Path(spec["base"]).resolve()
        flat.update(flatten(read_toml(base_path, "sweep base")))
    flat.update(flatten(nested))
    flat.update(overrides or {})
    base = from_flat(flat)
    if "parameters" in spec:
        params = tuple(spec["parameters"])
        settings = tuple(tuple(v) for v in spec["values"])
    elif "parameter" in spec:
        params = (spec["parameter"],)
        settings = tuple((v,) for v in spec["values"])
    else:
        raise ConfigError(f"{path}: [sweep] needs 'parameter' or 'parameters'")
    if not settings or any(len(s) != len(params) for s in settings):
        raise ConfigError(f"{path}: each setting needs one value per parameter {params}")
    for s in settings:  # validate every setting up front, not after an hour of runs
        base.replace(**dict(zip(params, s)))
    return Sweep(spec.get("name", path.stem), base, params, settings, spec.get("label", ", ".join(params)))


def _mean(values) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(float(v))]
    return sum(vals) / len(vals) if vals else None


def summarize(run: Path, cfg: ExperimentConfig) -> dict[str, Any]:
    """The sweep row's measurements from one run folder's typed rows."""
    folder = RunFolder(run)
    util = folder.rows(UtilityRow)
    final = max(util, key=lambda r: r.round) if util else None
    methods = [m.strip() for m in cfg.attack.label_methods.split(",") if m.strip() and m.strip() != "none"]
    labels = [r for r in folder.rows(LabelRow) if r.ok and (not methods or r.method == methods[0])]
    inv = [r for r in folder.rows(InversionRow) if r.ok]
    eps = [r.epsilon for r in folder.rows(PrivacyRow)]
    return {
        "test_accuracy": final.test_accuracy if final else None,
        "label_method": methods[0] if methods else None,
        "label_leacc": _mean(r.label_leacc for r in labels),
        "label_lnacc": _mean(r.label_lnacc for r in labels),
        "psnr": _mean(r.psnr for r in inv),
        "ssim": _mean(r.ssim for r in inv),
        "epsilon": max(eps) if eps else None,
        "attacked_updates": len(labels),
        "inversions": len(inv),
    }


def _default_runner(cfg: ExperimentConfig, out: Path, quiet: bool) -> Path:
    from fedsim.lab.runner import run_federation

    return run_federation(cfg, out, quiet=quiet)


def run_sweep(path: str | Path, out: str | Path, *, parallel: int = 1, runner: Runner | None = None,
              overrides: dict[str, Any] | None = None, quiet: bool = True) -> list[dict[str, Any]]:
    sweep = load_sweep(path, overrides)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    runner = runner or _default_runner

    def one(i: int) -> dict[str, Any]:
        setting = dict(zip(sweep.parameters, sweep.settings[i]))
        cfg = sweep.base.replace(**setting, **{"run.name": f"{sweep.name}_{i:02d}"})
        run = runner(cfg, out / f"setting_{i:02d}", quiet)
        row = {"index": i, "sweep": sweep.name, "setting": setting, "run": str(Path(run))}
        row.update(summarize(Path(run), cfg))
        return row

    idx = range(len(sweep.settings))
    if parallel > 1:
        with ThreadPoolExecutor(parallel) as pool:
            rows = list(pool.map(one, idx))
    else:
        rows = [one(i) for i in idx]
    with open(out / "sweep.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    figures = plot_sweep(rows, sweep, out)
    write_html(rows, sweep, out, figures)
    return rows


def _xlabels(rows: list[dict], sweep: Sweep) -> list[str]:
    return [", ".join(f"{v}" for v in r["setting"].values()) for r in rows]


def plot_sweep(rows: list[dict], sweep: Sweep, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(range(len(rows)))
    names = _xlabels(rows, sweep)
    figs = []

    def series(key):
        return [r.get(key) if r.get(key) is not None else float("nan") for r in rows]

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, style in (("label_leacc", "o-"), ("label_lnacc", "s-"), ("test_accuracy", "^--")):
        ax[0].plot(xs, series(key), style, label=key)
    ax[0].set_ylim(-0.02, 1.02)
    ax[0].set_ylabel("accuracy")
    ax[1].plot(xs, series("psnr"), "o-", color="C3", label="PSNR (dB)")
    ax[1].set_ylabel("PSNR of inversion (dB)")
    ax2 = ax[1].twinx()
    ax2.plot(xs, series("ssim"), "s--", color="C4", label="SSIM")
    ax2.set_ylabel("SSIM")
    for a in ax:
        a.set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
        a.set_xlabel(f"{sweep.label} (weakest -> strongest)")
        a.grid(alpha=0.3)
        a.legend(loc="best", fontsize=8)
    fig.suptitle(f"{sweep.name}: leakage and utility vs {sweep.label}")
    fig.tight_layout()
    figs.append(out / "sweep_leakage_utility.png")
    fig.savefig(figs[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    lk = series("label_lnacc")
    acc = series("test_accuracy")
    ax.plot(lk, acc, "o-")
    for x, y, n in zip(lk, acc, names):
        ax.annotate(n, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("label leakage (LnAcc of the attack; lower = more private)")
    ax.set_ylabel("final test accuracy")
    ax.set_title(f"{sweep.name}: privacy-utility frontier")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    figs.append(out / "sweep_frontier.png")
    fig.savefig(figs[-1], dpi=110)
    plt.close(fig)
    return figs


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.3g}"
    return html.escape(str(v))


COLUMNS = ("test_accuracy", "label_leacc", "label_lnacc", "psnr", "ssim", "epsilon", "attacked_updates")


def write_html(rows: list[dict], sweep: Sweep, out: Path, figures: list[Path]) -> Path:
    head = "".join(f"<th>{c}</th>" for c in ("setting",) + COLUMNS)
    body = "".join("<tr><td>" + html.escape(json.dumps(r["setting"])) + "</td>" +
                   "".join(f"<td>{_fmt(r.get(c))}</td>" for c in COLUMNS) + "</tr>" for r in rows)
    imgs = "".join(f'<p><img alt="{f.name}" src="data:image/png;base64,{base64.b64encode(f.read_bytes()).decode()}"></p>'
                   for f in figures if f.exists())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>sweep {html.escape(sweep.name)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:3px 8px}"
            "table{border-collapse:collapse}</style></head><body>"
            f"<h1>Sweep {html.escape(sweep.name)}: {html.escape(sweep.label)}</h1>"
            "<p>One federation per setting, weakest to strongest defense. Leakage: means over attacked updates.</p>"
            f"<table><tr>{head}</tr>{body}</table>{imgs}</body></html>")
    path = out / "sweep.html"
    path.write_text(page)
    return path
