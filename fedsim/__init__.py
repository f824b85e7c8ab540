"""fedsim: a testbed that shows, measures and defends against privacy leakage in federated learning.

The public Python API (``fedsim.api``, loaded on first use so that ``import fedsim`` and ``fedsim --help`` stay
free of torch and Flower)::

    import fedsim
    run = fedsim.run("configs/smoke.toml", out="runs/nb", overrides={"run.num_rounds": 2})
    run.frame("label"); run.report_path; run.captures()
    fedsim.attack(run, methods={"inversion": "ig"}); fedsim.load_run("runs/nb"); fedsim.sweep(spec, out=...)

Only the names in ``__all__`` are promised; everything else may change. The core package never imports
``flwr``: it is shared by the Flower apps (``clients/``, ``server/``) and the offline attack tooling (``attacks/``).
"""

from typing import Any

__version__ = "0.1.0"

_API = ("run", "load_run", "attack", "sweep", "Run", "SweepResult", "resolve_config")
_LAZY = {"ExperimentConfig": "fedsim.config", "load_config": "fedsim.config", "ConfigError": "fedsim.errors",
         "FedsimError": "fedsim.errors", "ImageDataset": "fedsim.data.core"}

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
