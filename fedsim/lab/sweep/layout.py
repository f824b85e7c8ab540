"""Where a sweep's runs live and which settings a command names.

A setting's runs live in ``DIR/<slug>/seed_S``: the slug is the setting's overrides in a short, filesystem-safe
form: ``dp_sgd.noise_multiplier=0.5,max_grad_norm=1,train.lr=0.3`` for ``defense.dp_sgd.enabled = true``,
``defense.dp_sgd.noise_multiplier = 0.5``, ... (the ``defense.`` prefix dropped, a table named once for its
keys in a row, ``enabled=true`` left out when keys of its table follow; ``base`` without overrides). It depends
only on the setting's own overrides, so it is stable when settings are added or reordered; a name longer than
:data:`MAX_SLUG` is cut and ends in a hash of the overrides; a setting whose name an earlier one already has
(case-insensitively) gets ``_NN`` (its index) appended. Sweeps written before (``DIR/setting_XX/seed_S``) are
still found: :func:`~fedsim.lab.sweep.execute.execute` uses such a folder in place when it holds a finished run of
the same config, and says it runs into the new folder otherwise.

:func:`select` turns ``--only`` arguments (a setting's index as in ``sweep.jsonl``, its label, or its folder
name) into setting indices, with a one-line error listing every valid choice.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable

from fedsim.core.errors import ConfigError
from fedsim.lab.sweep.spec import Setting, Sweep

MAX_SLUG = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]+")


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
            from fedsim.core.suggest import did_you_mean

            close = did_you_mean(key, [n for s in sweep.settings for n in (s.label, folders[s.index])])
            raise ConfigError(f"--only: no setting {key!r} in sweep {sweep.name}; valid: {choices}{close}")
        chosen |= hits
    return chosen


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def slug(overrides: dict[str, Any]) -> str:
    """The folder name of a setting's overrides (see the module docstring)."""
    if not overrides:
        return "base"
    parts, table = [], None
    items = [(k.removeprefix("defense."), v) for k, v in overrides.items()]
    for i, (key, v) in enumerate(items):
        head, _, tail = key.rpartition(".")
        more_of_table = any(k.rpartition(".")[0] == head for k, _ in items[i + 1:])
        if tail == "enabled" and v is True and more_of_table:
            continue  # implied by the table's other keys that follow
        parts.append(f"{tail if head == table else key}={_value(v)}")
        table = head
    text = ",".join(parts)
    text = _UNSAFE.sub("-", text).strip(".-") or "setting"
    if len(text) > MAX_SLUG:
        digest = hashlib.sha1(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]
        text = f"{text[:MAX_SLUG - 9].rstrip('.-')}~{digest}"
    return text


def setting_folders(sweep: Sweep) -> dict[int, str]:
    """Folder name of every setting (index -> name), unique: a name taken by an earlier setting gets ``_NN``."""
    names: dict[int, str] = {}
    taken: set[str] = set()
    for s in sweep.settings:
        name = slug(s.overrides)
        if name.lower() in taken:
            name = f"{name}_{s.index:02d}"
        taken.add(name.lower())
        names[s.index] = name
    return names


def run_folder(out: Path, folders: dict[int, str], setting: Setting, seed: int) -> Path:
    return out / folders[setting.index] / f"seed_{seed}"


def legacy_folder(out: Path, setting: Setting, seed: int) -> Path:
    """Where sweeps before issue 23 put the run: ``DIR/setting_XX/seed_S``."""
    return out / f"setting_{setting.index:02d}" / f"seed_{seed}"
