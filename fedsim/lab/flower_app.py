"""The Flower app folder that ``fedsim run`` / ``deploy-local`` / ``make flwr-run`` submit: a ``pyproject.toml`` and
nothing else, written for each run.

``flwr run APP`` builds a FAB from ``APP`` and every ServerApp / ClientApp process puts the unpacked FAB first on
``sys.path`` before it imports ``fedsim.server.app:app`` / ``fedsim.clients.app:app``. A FAB holding fedsim's code
(the checkout, as before) would shadow the installed package with a copy of it; a pip-installed fedsim has no
checkout at all. So the app carries no code: its components name the installed package, which every process
imports (an editable install maps it onto the checkout). The checkout's own ``pyproject.toml`` keeps the same
declarations for a hand-run ``flwr run .`` (its ``fab-include`` also leaves the code out).

The ``[tool.flwr.app.config]`` declarations (Flower refuses a run-config key the app does not declare) are
generated from ``ExperimentConfig``'s defaults, the source ``tests/test_config.py`` keeps the checkout's
``pyproject.toml`` equal to, so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COMPONENTS = {"serverapp": "fedsim.server.app:app", "clientapp": "fedsim.clients.app:app"}
PUBLISHER = "fedsim"
FILE = "pyproject.toml"


def app_document() -> dict[str, Any]:
    """The app's ``pyproject.toml`` as a mapping: ``[project]`` (name, version), ``[tool.flwr.app]`` (publisher,
    components, the config declarations with ``ExperimentConfig``'s defaults)."""
    from importlib.metadata import PackageNotFoundError, version

    from fedsim.core.config import ExperimentConfig

    try:
        installed = version("fedsim")  # the installed distribution's (importing fedsim's __init__ would loop)
    except PackageNotFoundError:
        installed = "0.0.0"
    return {"project": {"name": "fedsim", "version": installed,
                        "description": "fedsim's Flower app: the installed fedsim package's ServerApp and ClientApp",
                        "license": "Apache-2.0"},
            "tool": {"flwr": {"app": {"publisher": PUBLISHER, "components": dict(COMPONENTS),
                                      "config": ExperimentConfig().to_nested()}}}}


def write_app(folder: str | Path) -> Path:
    """Write the app's ``pyproject.toml`` into ``folder`` (created; anything else there is left alone, and
    nothing else is needed); returns the folder, for ``flwr run FOLDER``."""
    import tomli_w

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILE).write_text(tomli_w.dumps(app_document()), encoding="utf-8")
    return folder
