"""Where a sweep's runs live and which settings a command names.

:func:`select` turns ``--only`` arguments (a setting's index as in ``sweep.jsonl``, its label, or its folder
name) into setting indices, with a one-line error listing every valid choice.
"""

from __future__ import annotations

from typing import Iterable

from fedsim.errors import ConfigError
from fedsim.lab.sweep.spec import Sweep


def select(sweep: Sweep, names: Iterable[str]) -> set[int]:
    """Setting indices named by ``--only`` (index, label or folder name, case-insensitive); ConfigError names
    the unknown one and every valid choice."""
    folders = setting_folders(sweep)
    chosen: set[int] = set()
    for name in names:
        key = str(name).strip()
        hits = {s.index for s in sweep.settings
                if key == str(s.index) or key.lower() in (s.label.lower(), folders[s.index].lower())}
        if not hits:
            choices = "; ".join(f"{s.index} = {s.label} ({folders[s.index]})" for s in sweep.settings)
            raise ConfigError(f"--only: no setting {key!r} in sweep {sweep.name}; valid: {choices}")
        chosen |= hits
    return chosen


def setting_folders(sweep: Sweep) -> dict[int, str]:
    """Folder name of every setting (index -> name)."""
    return {s.index: f"setting_{s.index:02d}" for s in sweep.settings}
