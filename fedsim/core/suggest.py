""""Did you mean": the close names of a word that is not one of the valid ones (``difflib.get_close_matches``).

One helper for every place that refuses a name: method names (``attack.label_methods``, ``attack.inversion``),
choice keys (``model.name``, ``data.partition``, ...), datasets, config sections and keys, the CLI's subcommands
and choices (``fedsim.lab.cli_parser``), presets and paths. The refusal stays one line, naming the key and the
valid choices; :func:`did_you_mean` adds ``; did you mean 'x'?`` at its end when something is close. Written here
rather than taken from a library: the standard library's ``difflib`` does the matching, and argparse only suggests
from Python 3.14 on (``suggest_on_error``), for subcommands alone.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Iterable

#: close enough to suggest (difflib's ratio: 2 * matching characters / total characters)
CUTOFF = 0.6
#: suggestions at most, best first
MOST = 3
#: a suggestion this far below the best one's ratio is left out (``mnist_subst``: ``mnist_subset``, not ``mnist``)
MARGIN = 0.1
#: entries of a folder read at most to suggest a path (a huge folder is not listed)
MAX_ENTRIES = 500


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """``"; did you mean 'ig-shadow'?"`` (or ``'a' or 'b'``, best first) when ``word`` is close to some of
    ``choices``, else ``""``: appended to a one-line error. Case is ignored in the match (``Smoke`` -> ``smoke``)."""
    close = _close(str(word).strip(), choices)
    if not close:
        return ""
    quoted = [repr(c) for c in close]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f"; did you mean {listed}?"


def _close(text: str, choices: Iterable[object]) -> list[str]:
    """The choices close to ``text``, best first (case ignored; ``text`` itself left out)."""
    by_lower: dict[str, str] = {}
    for name in (str(c) for c in choices):
        if name != text:
            by_lower.setdefault(name.lower(), name)
    if not text or not by_lower:
        return []
    matches = difflib.get_close_matches(text.lower(), list(by_lower), n=MOST, cutoff=CUTOFF)
    if not matches:
        return []
    best = difflib.SequenceMatcher(None, matches[0], text.lower()).ratio()  # far behind the best: left out
    return [by_lower[m] for m in matches if difflib.SequenceMatcher(None, m, text.lower()).ratio() >= best - MARGIN]


def nearby_paths(path: str | Path) -> list[str]:
    """Existing paths one name away from ``path``: its first missing part replaced by each entry of the folder
    that holds it (``configs/smok.toml`` -> ``configs/smoke.toml``; ``config/smoke.toml`` ->
    ``configs/smoke.toml``) when that name is close to it, spelled as ``path`` was (relative stays relative).
    For :func:`did_you_mean`."""
    path = Path(path).expanduser()
    parts = path.parts
    folder = Path(parts[0]) if path.is_absolute() else Path()
    for i, part in enumerate(parts[1:] if path.is_absolute() else parts, start=1 if path.is_absolute() else 0):
        if (folder / part).exists():
            folder = folder / part
            continue
        rest = parts[i + 1:]
        try:
            entries = sorted(e.name for _, e in zip(range(MAX_ENTRIES), folder.iterdir()))
        except OSError:
            return []
        return [str(folder.joinpath(name, *rest)) for name in _close(part, entries)
                if folder.joinpath(name, *rest).exists()]
    return []


#: a second ``key=value`` in one ``--set`` value: `` b=2`` after the first value (a dotted or plain key)
_SECOND_PAIR = re.compile(r"\s+([A-Za-z_][\w.-]*)=")


def one_key_per_set(item: str) -> str | None:
    """The hint for ``--set "a=1 b=2"`` (Flower's ``--run-config`` habit: several pairs in one string), else None:
    ``--set 'a=1 b=2': one key=value per --set; pass several: --set a=1 --set b=2``. A value holding a space
    but no second ``key=`` (a folder name with a space) is no such case."""
    _, _, value = item.partition("=")
    if not _SECOND_PAIR.search(value.strip()):
        return None
    pairs = [p for p in re.split(r"\s+(?=[A-Za-z_][\w.-]*=)", item.strip()) if p]
    return f"--set {item!r}: one key=value per --set; pass several: {' '.join(f'--set {p}' for p in pairs)}"
