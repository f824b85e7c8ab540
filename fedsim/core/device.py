"""One place that turns the ``run.device`` setting into a ``torch.device``.

``"auto"`` picks the first CUDA device when one is available and the CPU otherwise; ``"cpu"``, ``"cuda"`` and
``"cuda:N"`` are taken literally and fail with a ``ValueError`` (naming ``run.device`` and the valid choices)
when the device does not exist here. Everything downstream (training, attacks) follows the device of the model
and tensors it is given; only the entry points call :func:`resolve_device`.
"""

from __future__ import annotations

import re

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA_INDEX = re.compile(r"^cuda:(\d+)$")


def resolve_device(spec: str) -> torch.device:
    """``"auto" | "cpu" | "cuda" | "cuda:N"`` -> ``torch.device``; a bad or unavailable device raises ValueError."""
    if not isinstance(spec, str):
        raise ValueError(f"run.device: {spec!r} is not a string; valid choices: {', '.join(DEVICE_CHOICES)}")
    text = spec.strip().lower()
    if text == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = _CUDA_INDEX.match(text)
    if text != "cuda" and match is None:
        raise ValueError(f"run.device: {spec!r} is not one of {', '.join(DEVICE_CHOICES)}")
    if not torch.cuda.is_available():
        raise ValueError(f"run.device: {spec!r} asks for CUDA, but torch.cuda.is_available() is False here "
                         f"(torch {torch.__version__}); use run.device = \"cpu\" or \"auto\"")
    index = int(match.group(1)) if match else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(f"run.device: {spec!r} names CUDA device {index}, but only {count} "
                         f"{'is' if count == 1 else 'are'} visible (cuda:0..cuda:{count - 1})")
    return torch.device(f"cuda:{index}")
