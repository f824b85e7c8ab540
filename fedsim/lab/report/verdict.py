"""Verdicts on the headline cards: how far a number is from what an attacker who ignores the update scores
(its chance level, :mod:`fedsim.lab.report.chance`), on one scale stated once on the page (``SCALE``).

* A share (labels recovered, re-identified): the distance is the larger of ``value / chance`` (hits over chance's
  hits) and ``(1 - chance) / (1 - value)`` (chance's misses over the attack's misses). The second keeps a high
  chance level from hiding a leak: a random guess of 20 labels over 10 classes already recovers ~74 %, so even
  every label right is only 1.3x chance's hits, but none of chance's 26 % misses.
* PSNR: the gain in dB over the blind guess (the dataset-mean image), which is the ratio of the blind guess's
  mean squared error to the reconstruction's, ``10 ** (dB / 10)``: the same thresholds are 1.8 dB and 7.0 dB.

Below 1.5x: at chance (grey); 1.5x to 5x: above chance (amber); 5x and above: far above chance (red). Own code:
three thresholds and two ratios, nothing a library offers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedsim.core.rows import finite_float as num

WARN = 1.5  #: from this distance on, a number is above chance (amber)
ALARM = 5.0  #: from this distance on, far above chance (red)

SCALE = ('<p class="legend scale"><b>Colours</b>: each leakage number against its chance level (what an attacker '
         'who ignores the update scores): <span class="verdict chance">at chance</span> below 1.5x, '
         '<span class="verdict warn">n x chance</span> from 1.5x, <span class="verdict alarm">n x chance</span> '
         '5x and above. For a share the distance is the larger of value / chance and chance\'s misses over the '
         'attack\'s ((1 - chance) / (1 - value)), so a high chance level (a random guess of 20 labels of 10 '
         'classes gets ~74 %) '
         'hides no leak; for PSNR it is the squared error of the blind guess (the dataset-mean image) over the '
         'reconstruction\'s, 10^(dB/10): 1.8 dB and 7.0 dB above the blind guess. An image card takes the farther '
         'of its PSNR and its re-identification.</p>')


@dataclass(frozen=True)
class Verdict:
    """``times``: the distance from chance (None when a number or its chance is missing); ``cls``: the card's
    class ("chance", "warn", "alarm", "" when unknown); ``words``: the label beside the number."""

    times: float | None
    cls: str
    words: str


def level(times: float | None) -> str:
    if times is None:
        return ""
    return "alarm" if times >= ALARM else "warn" if times >= WARN else "chance"


def _x(t: float) -> str:
    return "∞x" if math.isinf(t) else f"{t:.0f}x" if t >= 10 else f"{t:.1f}x"


def share_verdict(value, chance) -> Verdict:
    """A share in [0, 1] against its chance level."""
    v, c = num(value), num(chance)
    if v is None or c is None:
        return Verdict(None, "", "chance not recorded" if v is not None else "")
    hit = v / c if c > 0 else (math.inf if v > 0 else 1.0)
    miss = (1 - c) / (1 - v) if v < 1 else (math.inf if c < 1 else 1.0)
    times = max(hit, miss, 0.0)
    cls = level(times)
    if cls == "chance":
        return Verdict(times, cls, f"at chance ({_x(hit)})")
    if miss > hit:  # a high chance level: say what moved, the misses
        fewer = "no misses" if math.isinf(miss) else f"{_x(miss)} fewer misses"
        return Verdict(times, cls, f"{_x(hit)} chance, {fewer} (a random guess gets {c:.0%})")
    return Verdict(times, cls, f"{_x(hit)} chance")


def psnr_verdict(psnr, blind) -> Verdict:
    """A PSNR (dB) against the blind guess's PSNR on the same images."""
    p, b = num(psnr), num(blind)
    if p is None or b is None:
        return Verdict(None, "", "blind guess not recorded" if p is not None else "")
    gain = p - b
    times = 10 ** (gain / 10)
    cls = level(times)
    if cls == "chance":
        where = f"+{gain:.1f} dB over" if gain >= 0 else f"{-gain:.1f} dB below"
        return Verdict(times, cls, f"at chance ({where} the blind guess)")
    return Verdict(times, cls, f"+{gain:.1f} dB over the blind guess ({_x(times)} less squared error)")


_RANK = {"": 0, "chance": 1, "warn": 2, "alarm": 3}


def stronger(*verdicts: Verdict) -> Verdict:
    """One card's verdict from several of its numbers: the class of the farthest from chance, every known one's
    words (an image card's PSNR and re-identification: a blurry reconstruction can still give its source away)."""
    known = [v for v in verdicts if v.times is not None]
    if not known:
        return next((v for v in verdicts if v.words), Verdict(None, "", ""))
    top = max(known, key=lambda v: (_RANK[v.cls], v.times))
    return Verdict(top.times, top.cls, " · ".join(v.words for v in known))
