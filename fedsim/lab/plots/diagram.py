"""The threat-model drawing at the top of the report (clients, the honest-but-curious server, what it sees)."""

from __future__ import annotations

import functools

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from fedsim.lab.plots.style import INK, MUTED, BLUE, ORANGE, RED, PURPLE, _RC, _png, plt


@functools.lru_cache(maxsize=1)
def threat_model_diagram() -> bytes:
    """Clients -> updates -> honest-but-curious server (aggregates AND intercepts) -> attacks (cached)."""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(10, 4.1))
        ax.set_xlim(0, 100)
        ax.set_ylim(-1, 41)
        ax.axis("off")

        def box(x, y, w, h, text, fc, ec, size=9, weight="normal", color=INK):
            ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.4,rounding_size=1.2",
                                        fc=fc, ec=ec, lw=1.4))
            ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight,
                    color=color, linespacing=1.35)

        def arrow(p, q, color=MUTED, style="-|>", lw=1.4, ls="-", rad=0.0):
            ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=13, color=color, lw=lw,
                                         linestyle=ls, connectionstyle=f"arc3,rad={rad}"))

        # clients (private data stays here)
        ax.text(9, 39.5, "CLIENTS (data stays here)", ha="center", fontsize=8, color=MUTED, weight="bold")
        for i, y in enumerate((28, 16.5, 5)):
            box(1.5, y, 15, 7.5, f"client {i}\nprivate images\n+ labels", "#eff6ff", BLUE, size=8)
        # updates converge on the server
        for y in (31.75, 20.25, 8.75):
            arrow((17.6, y), (29.6, 16.0 + (y - 20.25) * 0.15), color=BLUE)
        ax.text(23.5, 35.0, "model updates\n(gradients\nor weights)", ha="center", va="center", fontsize=7.5,
                color=BLUE)
        # global model back to the clients
        arrow((29.8, 3.2), (17.0, 4.6), color="#9aa5b1", ls="--", rad=-0.1)
        ax.text(23.5, 0.2, "new global model", fontsize=7, color=MUTED, ha="center")

        # server
        ax.add_patch(FancyBboxPatch((30.5, 1), 26, 35.5, boxstyle="round,pad=0.4,rounding_size=1.5",
                                    fc="#fff7ed", ec=ORANGE, lw=1.6))
        ax.text(43.5, 34.0, "SERVER", ha="center", fontsize=9, weight="bold", color=INK)
        ax.text(43.5, 31.8, "honest-but-curious: runs the protocol\ncorrectly, but also looks",
                ha="center", va="top", fontsize=7.5, color=MUTED, linespacing=1.3)
        box(33.5, 21, 20.5, 5.5, "intercepts: keeps a copy\nof every single update", "#ffedd5", RED, size=7.5,
            weight="bold", color=RED)
        box(33.5, 5.5, 20.5, 5.5, "aggregates\n(FedAvg: its normal job)", "white", "#9aa5b1", size=7.5)
        arrow((31.4, 16.5), (37.0, 20.6), color=RED, rad=-0.2)
        arrow((31.4, 15.5), (37.0, 11.4), color="#9aa5b1", rad=0.2)
        ax.text(46.0, 15.6, "the same update feeds both", ha="center", fontsize=7, color=MUTED, style="italic")

        # attack chain
        ax.text(78, 39.5, "WHAT THE SERVER CAN DO WITH ONE UPDATE", ha="center", fontsize=8, color=MUTED,
                weight="bold")
        box(61, 26, 15, 9, "fake gradient\nweight change \u00f7 lr\n(FedSGD: exact)", "#faf5ff", PURPLE,
            size=7.5)
        box(61, 5, 15, 9, "label restoration\nwhich classes, how\nmany of each", "#faf5ff", PURPLE, size=7.5)
        box(82, 15, 16.5, 11, "image\nreconstruction\n(gradient inversion)", "#fef2f2", RED, size=8,
            weight="bold", color=RED)
        arrow((54.6, 24.5), (60.6, 29.5), color=RED, rad=-0.1)
        arrow((68.5, 25.7), (68.5, 14.4), color=PURPLE)
        arrow((76.4, 9.5), (81.6, 17), color=PURPLE, rad=0.1)
        arrow((76.4, 30.5), (81.6, 24), color=PURPLE, rad=-0.1)
        ax.text(90.2, 12.5, "scored against the\nclient's true batch:\nPSNR / SSIM", ha="center", va="top",
                fontsize=7, color=MUTED)
        return _png(fig, tight_bbox=True)


