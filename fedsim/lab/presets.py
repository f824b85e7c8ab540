"""The presets that ship with fedsim (the checkout's ``configs/``, installed as the package ``fedsim.presets``).

Read through ``importlib.resources``, so a pip-installed fedsim finds them in its own package and an editable
checkout in ``configs/``. A command that takes a config (``fedsim run``, ``check``, ``deploy-local``, ``sweep``,
``list --config``, ``fedsim.run``) takes a preset's name as well: an existing path wins, then a preset name
(``smoke`` or ``smoke.toml``); anything else fails in one line listing the presets. ``fedsim init DIR`` copies
them out for editing.

Presets are used from the files as installed (a wheel installs as plain files): a sweep file names its base
relative to itself (``base = "defense_fedsgd.toml"``), which needs the presets side by side in one folder.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fedsim.core.errors import ConfigError

PACKAGE = "fedsim.presets"
SUFFIX = ".toml"


@dataclass(frozen=True)
class Preset:
    """One packaged preset: its name (file stem), file and the first line of its leading comment."""

    name: str
    path: Path
    description: str

    @property
    def is_sweep(self) -> bool:
        return self.name.startswith("sweep_")


def folder() -> Path:
    """The installed presets' folder (a real folder: setuptools installs package data as files)."""
    root = resources.files(PACKAGE)
    if not isinstance(root, Path):  # a zip import: not how pip installs fedsim
        raise ConfigError(f"the presets of {PACKAGE} are not files on disk ({root}); install fedsim with pip")
    return root


def presets() -> list[Preset]:
    """Every packaged preset, by name."""
    return [Preset(p.stem, p, _description(p)) for p in sorted(folder().glob(f"*{SUFFIX}"))]


def names() -> list[str]:
    return [p.name for p in presets()]


def _description(path: Path) -> str:
    """The first line of the file's leading ``#`` comment (empty when it has none)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def find(name: str) -> Path | None:
    """The packaged preset ``name`` (``smoke`` or ``smoke.toml``), or None."""
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        return None
    path = folder() / f"{stem}{SUFFIX}"
    return path if path.is_file() else None


def resolve(spec: str | Path) -> Path:
    """A config argument as a file: an existing path as given, else the preset of that name; a one-line
    ``ConfigError`` naming the presets otherwise."""
    path = Path(spec).expanduser()
    if path.exists():
        return path
    found = find(str(spec))
    if found is not None:
        return found
    from fedsim.core.suggest import did_you_mean, nearby_paths

    close = did_you_mean(spec, [*nearby_paths(path), *names()])  # a file beside the one meant, or a preset
    raise ConfigError(f"config file {spec} does not exist and is not a preset name; presets: {', '.join(names())} "
                      f"(fedsim list presets){close}")


def render(fmt: str = "text") -> str:
    """``fedsim list presets``: one line per preset (name, one-line description), or JSON."""
    items = presets()
    if fmt == "json":
        import json

        return json.dumps([{"name": p.name, "description": p.description, "sweep": p.is_sweep, "path": str(p.path)}
                           for p in items], indent=2)
    width = max(len(p.name) for p in items)
    lines = [f"presets ({folder()}): fedsim run NAME, fedsim check NAME, fedsim init DIR to copy them"]
    lines += [f"  {p.name:<{width}}  {p.description}" for p in items]
    return "\n".join(lines)


def copy_out(target: str | Path, force: bool = False) -> list[Path]:
    """``fedsim init DIR``: copy every preset into ``target`` (created); a file already there is refused in one
    line unless ``force``. Nothing is written when any would be refused."""
    target = Path(target).expanduser()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"init: {target} is a file, not a folder")
    items = presets()
    clash = [p.path.name for p in items if (target / p.path.name).exists()]
    if clash and not force:
        shown = ", ".join(clash[:3]) + (f" and {len(clash) - 3} more" if len(clash) > 3 else "")
        raise ConfigError(f"init: {target} already holds {shown}; pass --force to overwrite them")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for p in items:
        shutil.copyfile(p.path, target / p.path.name)
        written.append(target / p.path.name)
    return written
