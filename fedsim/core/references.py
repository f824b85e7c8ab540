"""Config-load checks of ``model.name`` and ``data.dataset``: a registered name, ``folder``, or an importable
``package.module:attr`` (imported and looked up, not called: building the model and loading the data are the
preflight's job, ``fedsim.core.experiment.check_model``)."""

from __future__ import annotations

from typing import Any

from fedsim.core.errors import ConfigError
from fedsim.core.objref import is_ref, load_object
from fedsim.core.suggest import did_you_mean


def check_references(cfg: Any) -> None:
    """One-line ``ConfigError`` naming ``data.dataset`` / ``model.name`` for an unknown name or a reference that
    does not import; ``folder`` needs ``data.data_dir``."""
    from fedsim.core.data.core import DATASETS  # imports torch
    from fedsim.core.data import sources  # noqa: F401  (registers loaders)

    name = cfg.data.dataset
    if is_ref(name):
        load_object("data.dataset", name)
    elif name not in DATASETS:
        raise ConfigError(f"data.dataset: {name!r} is not one of {', '.join(sorted(DATASETS))} "
                          f"or a 'package.module:loader'{did_you_mean(name, DATASETS)}")
    elif name == "folder" and not cfg.data.data_dir:
        raise ConfigError("data.data_dir: data.dataset = 'folder' needs the folder of the class-per-subfolder "
                          "image tree (data_dir/<class>/<image>)")
    if is_ref(cfg.model.name):
        load_object("model.name", cfg.model.name)
