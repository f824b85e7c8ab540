"""Where runs go: the one place that says it.

A run folder is ``--out`` when given (relative to the current folder, as any command-line path), else
``run.out_dir``, else ``runs/<run.name>``; those two are relative to the *anchor*: ``$FEDSIM_ROOT`` when set, else
the current folder. So ``fedsim run smoke`` in ``~/study`` writes ``~/study/runs/smoke``, whether fedsim is a
pip-installed wheel or an editable checkout (never the package's own folder, never site-packages).

The lab entry points (``fedsim run``/``demo``/``deploy-local``/``sweep``, ``fedsim.run``, ``make flwr-run``)
resolve the folder here, absolute, before Flower starts, and submit it as ``run.out_dir`` in the resolved
``config.toml``: the ServerApp and every ClientApp then write that one folder whatever their working directory.
Only a config submitted by hand (a bare ``flwr run APP --run-config FILE``) can reach the apps with a relative
``run.out_dir``; each process then anchors it here, and ``$FEDSIM_ROOT`` is how to make them agree (Flower starts
its processes from the folder its SuperLink was started in). ``FEDSIM_ROOT`` exists for that case and for keeping
a test's or a CI job's runs out of the working folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Environment variable that, when set, anchors ``runs/<run.name>`` and a relative ``run.out_dir``.
ROOT_ENV = "FEDSIM_ROOT"
RUNS = "runs"


def anchor() -> Path:
    """``$FEDSIM_ROOT`` (expanded, absolute) when set, else the current folder."""
    env = os.environ.get(ROOT_ENV, "").strip()
    return Path(env).expanduser().resolve() if env else Path.cwd()


def run_folder(cfg: Any, out: str | Path | None = None, suffix: str = "") -> Path:
    """The absolute run folder of ``cfg``: ``out`` (relative to the current folder), else ``run.out_dir``, else
    ``runs/<run.name><suffix>`` (both relative to :func:`anchor`). ``suffix``: ``-deploy`` for ``deploy-local``."""
    if out is not None and str(out) != "":
        return Path(out).expanduser().resolve()
    path = Path(cfg.run.out_dir).expanduser() if cfg.run.out_dir else Path(RUNS) / f"{cfg.run.name}{suffix}"
    return path if path.is_absolute() else (anchor() / path).resolve()


def run_dir(cfg: Any) -> Path:
    """The folder the Flower apps write: ``run.out_dir`` (absolute when a lab entry point submitted the config),
    else as :func:`run_folder` without ``--out``."""
    return run_folder(cfg)


def flwr_home_default() -> Path:
    """``FLWR_HOME`` of ``make flwr-run`` when none is given: ``runs/.flwr`` under the anchor."""
    return anchor() / RUNS / ".flwr"
