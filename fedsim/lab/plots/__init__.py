"""Figures for the run report, drawn with matplotlib's Agg backend and returned as PNG bytes.

Every function takes typed rows (``fedsim.core.rows``: ``UtilityRow``, ``LabelRow``, ``InversionRow``, as
:class:`fedsim.core.runfolder.RunFolder` reads them), never touches the run folder, and returns ``bytes`` (a PNG) or
``None`` when there is nothing to draw. Field values are not trusted (a hand-edited file may hold a string where
a number belongs): non-numeric values are left out. The report embeds the PNGs as data URIs.

Modules: ``style`` (palette, rc, PNG writer, Agg backend), ``diagram`` (threat model), ``charts`` (utility,
leakage, privacy), ``timeline`` (leakage across training).
"""

from fedsim.lab.plots.style import _RC, BLUE, DPI, GREEN, GRID, INK, MUTED, ORANGE, PURPLE, RED, SERIES, plt  # noqa: F401
from fedsim.lab.plots.charts import epsilon_plot, leakage_plot, utility_plot, varies  # noqa: F401
from fedsim.lab.plots.diagram import threat_model_diagram  # noqa: F401
from fedsim.lab.plots.timeline import timeline_plot  # noqa: F401
