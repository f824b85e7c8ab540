"""Utility per round, and leakage against round / batch size / local steps."""

from __future__ import annotations

from fedsim.lab import plots
from fedsim.lab.report.common import figure, ok
from fedsim.lab.report.data import RunData


def utility(data: RunData) -> str:
    png = plots.utility_plot(data.utility) if data.utility else None
    return (figure(png, "test accuracy and loss per round", narrow=True)
            or '<p class="muted">No utility rows in metrics.jsonl.</p>')


def leakage(data: RunData) -> str | None:
    """Leakage against batch size and local steps; None (no section) when the run varies neither (leakage by
    round is the timeline's, drawn only when several rounds were attacked: one round is a single point)."""
    lab = [r for r in data.labels if ok(r)]
    inv = [r for r in data.inversions if ok(r)]
    if not lab and not inv:
        return '<p class="muted">No successful attacks to plot.</p>'
    both = [*lab, *inv]
    if not (plots.varies(both, "batch_size") or plots.varies(both, "local_steps")):
        return None
    out = []
    if plots.varies(both, "batch_size"):
        out.append(figure(plots.leakage_plot(lab, inv, "batch_size", "client batch size",
                                             "Leakage vs batch size (more images per update)"),
                          "leakage vs batch size"))
    if plots.varies(both, "local_steps"):
        out.append(figure(plots.leakage_plot(lab, inv, "local_steps", "local steps per update",
                                             "Leakage vs local steps (FedAvg)"), "leakage vs local steps"))
    notes = [k for k in ("batch size", "local steps") if not plots.varies(both, k.replace(" ", "_"))]
    if notes:
        out.append(f'<p class="muted">This run does not vary {" or ".join(notes)}, so there is no plot against '
                   f'{"them" if len(notes) > 1 else "it"}.</p>')
    return "".join(out)
