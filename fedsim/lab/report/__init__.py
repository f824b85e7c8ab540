"""``fedsim report RUN_DIR``: one self-contained ``RUN_DIR/report.html`` for a run folder.

The page inlines everything (CSS, PNG figures and reconstruction grids as base64 data URIs); it loads no fonts,
scripts or images from anywhere, so it can be mailed or archived as one file. The one exception it links (and does
not load): a batch of more than 16 images shows its first 16 and links its full grid, ``images/*_full.png``,
which works while the page stays in its run folder. One module per section:

============  ==================================================================================
data          reads the run folder (RunFolder + typed rows), defensively
common        escaping, formatting of untrusted values, image embedding, markup helpers
summary       banners (lost rounds), configuration, how to read, headline numbers, best reconstruction
verdict       each headline number's distance from chance (at chance / n x chance), the scale stated on the page
utility       utility per round; leakage vs round / batch size / local steps
timeline      leakage across training: accuracy beside leakage, per-round table, best per stage
labels        label restoration per client and round
inversions    reconstruction gallery
privacy       epsilon / delta / accountant per DP setting
failures      lost rounds, failed and timed-out attacks, unscored, skipped, rejections, reader notes
render        assembles the page, ``write_report``
============  ==================================================================================

Inputs are read defensively: any of ``config.toml``, ``metrics.jsonl``, ``rejections.jsonl``, ``captures/`` and
``images/`` may be missing, empty or cut off mid-line; nothing is ever unpickled. Image paths from rows are only
embedded when they point at a PNG file inside the run folder.
"""

from fedsim.lab.report.data import RunData, load_run
from fedsim.lab.report.render import render_html, write_report

__all__ = ["RunData", "load_run", "render_html", "write_report"]
