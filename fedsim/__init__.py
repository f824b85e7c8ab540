"""fedsim: a testbed that shows, measures and defends against privacy leakage in federated learning.

The public Python API (``fedsim.api``, loaded on first use so that ``import fedsim`` and ``fedsim --help`` stay
free of torch and Flower)::

    import fedsim
    run = fedsim.run("configs/smoke.toml", out="runs/nb", overrides={"run.num_rounds": 2})
    run.frame("label"); run.report_path; run.captures()
    fedsim.attack(run, methods={"inversion": "ig"}); fedsim.load_run("runs/nb"); fedsim.sweep(spec, out=...)

Only the names in ``__all__`` are promised; everything else may change.

The floors (docs/architecture.md), one sub-package each, each importing only the floors below it:
``fedsim.core`` (config, data, models, training, defenses, records; never ``flwr``) -> ``fedsim.attacks``
(pure PyTorch; the folder ``attacks/``) -> ``fedsim.evaluation`` (the only ground-truth reader) -> the Flower
shells ``fedsim.clients`` / ``fedsim.server`` (folders ``clients/``, ``server/``) -> the lab shell ``fedsim.lab``
(CLI, sweeps, report) and this package's API (``fedsim.api``).

The folders ``attacks/``, ``clients/``, ``server/`` and ``configs/`` sit beside this one (the project's fixed top
level) and are installed *inside* this package as ``fedsim.attacks``, ``fedsim.clients``, ``fedsim.server`` and
``fedsim.presets`` (``pyproject.toml``: ``package-dir``), so a user's own ``attacks`` or ``server`` package never
collides with ours. A wheel holds them under those names; an editable install (``pip install -e .``) maps the
same names onto the checkout's folders (setuptools' editable finder). Nothing else finds them: this package's
``__path__`` is its own folder only, and a Flower app run by fedsim carries no code (``fedsim.lab.flower_app``),
so every process imports the one installed fedsim.
"""

from typing import Any

__version__ = "0.1.0"

_API = ("run", "load_run", "attack", "sweep", "Run", "SweepResult", "resolve_config")
_LAZY = {"ExperimentConfig": "fedsim.core.config", "load_config": "fedsim.core.config", "ConfigError": "fedsim.core.errors",
         "FedsimError": "fedsim.core.errors", "ImageDataset": "fedsim.core.data.core"}

__all__ = [*_API, *_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    """The API names, imported on first use (PEP 562)."""
    if name in _API:
        from fedsim import api

        return getattr(api, name)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fedsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
