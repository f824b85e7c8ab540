"""Assembles report.html from the sections, and writes it atomically into the run folder."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from fedsim.lab import plots
from fedsim.lab.report.common import cfg, e, figure, section
from fedsim.lab.report.data import RunData, load_run
from fedsim.lab.report.failures import failures
from fedsim.lab.report.inversions import gallery
from fedsim.lab.report.labels import label_table
from fedsim.lab.report.privacy import privacy
from fedsim.lab.report.style import CSS
from fedsim.lab.report.summary import HOWTO, banners, config_table, full_config, headline
from fedsim.lab.report.timeline import timeline
from fedsim.lab.report.utility import leakage, utility
from fedsim.core.runfolder import RunFolder

THREAT_ALT = ("clients send updates to a curious server that aggregates and intercepts them, turns them into a "
              "fake gradient, restores labels and reconstructs images")

#: (anchor, table-of-contents entry, title, body, lead) of each numbered section, in page order.
SECTIONS = (
    ("threat", "Threat model", "The threat model in one picture",
     lambda d: figure(plots.threat_model_diagram(), THREAT_ALT),
     "Nobody hacks anything here: the server runs federated learning exactly as specified. It simply also keeps "
     "the individual updates it has to receive anyway, and attacks them offline."),
    ("headline", "Headline", "Headline numbers",
     lambda d: headline(d) or '<p class="muted">No results to summarise.</p>',
     "Averages over every attacked update of what the attacker would pick itself (its own criterion, no ground "
     "truth). Higher means more of the clients' private data leaked; each identifiability score beside its chance "
     "level."),
    ("utility", "Utility", "Utility per round", utility,
     "The federation's purpose: the global model's accuracy and loss on held-out test data after each round."),
    ("timeline", "Timeline", "Leakage across training", timeline,
     "The same clients attacked at several points of training: does the leak close as the model learns?"),
    ("leakage", "Leakage", "What makes an update leak", leakage,
     "Light dots are single attacked updates, lines their mean. Leakage usually falls with more images per "
     "update and more local steps (FedAvg)."),
    ("labels", "Labels", "Label restoration per client and round", label_table,
     "For each captured update: the labels truly in the client's batch, and what each method restored from the "
     "update alone."),
    ("images", "Images", "Reconstructed images", gallery,
     "Ordered by PSNR against the client's real images, for reading (the attacker cannot order them so; its own "
     "pick of each update is marked). In every grid the top row is the client's real batch and the bottom row the "
     "server's reconstruction, matched image by image."),
    ("privacy", "Privacy", "Privacy spent (differential privacy)", privacy,
     "ε reported by each DP mechanism's accountant (lower = stronger guarantee), with its δ."),
    ("problems", "Failures", "Failures, skips, rejected and capped replies, lost rounds", failures,
     "Attacks that crashed, timed out or were skipped, updates that could not be captured, client replies the "
     "server rejected, replies it aggregated with a capped weight, and rounds that aggregated nothing."),
)


def _subtitle(data: RunData) -> str:
    c = lambda s, k: cfg(data, s, k)  # noqa: E731
    bits = [c("data", "dataset"), c("train", "algorithm") and str(c("train", "algorithm")).upper(),
            c("run", "num_clients") and f"{c('run', 'num_clients')} clients",
            c("run", "num_rounds") and f"{c('run', 'num_rounds')} rounds"]
    return " · ".join(str(b) for b in bits if b)


def _footer(data: RunData) -> str:
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    files = (f"{data.num_captures} captured updates, {data.num_images} images, {len(data.utility)} utility rows, "
             f"{len(data.labels)} label rows, {len(data.inversions)} inversion rows, {len(data.privacy)} privacy "
             f"rows, {len(data.attack_errors)} attack errors, {len(data.skipped)} skipped, "
             f"{len(data.lost_rounds)} lost rounds, {len(data.refused)} rejected and {len(data.capped)} capped replies, "
             f"{len(data.capture_errors)} capture errors")
    return (f'<footer>Generated {now} by <code>fedsim report</code> from <code>{e(data.run_dir)}</code>: '
            f'{e(files)}. Self-contained: no network access needed to view this file.</footer>')


def render_html(data: RunData) -> str:
    name = cfg(data, "run", "name") or data.run_dir.name or "run"
    shown = [(anchor, toc_entry, title, html, lead) for anchor, toc_entry, title, fn, lead in SECTIONS
             if (html := fn(data)) is not None]  # a section with nothing to say returns None
    body = "".join(section(anchor, i, title, html, lead)
                   for i, (anchor, _, title, html, lead) in enumerate(shown, 1))
    toc = "".join(f'<a href="#{a}">{e(t)}</a>' for a, t, *_ in shown)
    subtitle = e(_subtitle(data)) or "run folder " + e(data.run_dir.name)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fedsim report · {e(name)}</title>
<style>{CSS}</style></head>
<body>
<header class="top"><div class="inner">
<div class="kicker">fedsim · privacy leakage report</div>
<h1>{e(name)}</h1>
<p>{subtitle}</p>
<p style="margin-top:10px">Federated learning keeps the data on the clients and shares only model updates.
This report shows what an honest-but-curious server recovers from those updates: which labels were in a
client's batch, and what the images looked like.</p>
<nav class="toc">{toc}</nav>
</div></header>
<main>
{banners(data)}
{config_table(data)}
{full_config(data)}
<h2 style="margin-top:30px">How to read this</h2>
{HOWTO}
{body}
{_footer(data)}
</main></body></html>
"""


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` and return its path (creates the folder if it does not exist)."""
    folder = RunFolder(Path(run_dir))
    page = render_html(load_run(folder.root))
    folder.root.mkdir(parents=True, exist_ok=True)
    tmp = folder.root / ".report.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(folder.report)
    return folder.report
