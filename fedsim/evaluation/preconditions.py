"""What ``[attack]`` needs before a run starts, checked where both entry points can call it.

``fedsim run`` (through ``fedsim.lab.preflight``) and the ServerApp itself (``server/app.py`` main, which is all
that runs under a bare ``flwr run .``) call :func:`check_attack_inputs`, so a bad attack input is the same
one-line ``ConfigError`` before the first round either way, instead of one failed attack row per capture after
training. The core config (``fedsim.core.config``) cannot do this: it must not import ``attacks``, and it is also
loaded by ClientApps on machines that do not hold the server's files.
"""

from __future__ import annotations

from pathlib import Path

from fedsim.core.config import ExperimentConfig
from fedsim.core.errors import ConfigError
from fedsim.evaluation.attacking import plan_from_config


def check_attack_inputs(cfg: ExperimentConfig, run_dir: str | Path, files: bool | None = None):
    """Raise a one-line ``ConfigError`` for an ``[attack]`` the attacks would refuse; return the attack plan.

    Method names (``attack.label_methods``, ``attack.inversion``) are looked up in their registries always
    (``plan_from_config``: the one check of a name);
    with ``files`` (default: ``attack.enabled``) also the files the attacks read on this machine: the generative
    prior of a method that needs a "trained prior" (``ggl`` / ``gias``; ``attack.prior_path``, default ``<run>/priors/<dataset>_vae.safetensors``) unless
    ``attack.prior_autotrain`` trains it at run time, and ``attack.lpips_weights``."""
    plan = plan_from_config(cfg)
    if files is None:
        files = cfg.attack.enabled
    if files:
        _check_prior(cfg, plan.inversion, Path(run_dir))
        _check_lpips(cfg.attack.lpips_weights)
    return plan


def _check_prior(cfg: ExperimentConfig, inversion: str | None, run_dir: Path) -> None:
    from fedsim.attacks.inversion import INVERSION_METHODS
    from fedsim.attacks.records import Need

    if inversion is None or Need.TRAINED_PRIOR not in INVERSION_METHODS[inversion].needs:
        return
    from fedsim.attacks.generative import DEFAULT_ARCH, arch_prior_path, default_prior_path, parse_archs

    try:
        archs = parse_archs(cfg.attack.prior_archs)
    except ValueError as err:
        raise ConfigError(f"attack.{err}") from None  # err names prior_archs and the valid decoders
    if cfg.attack.prior_autotrain:
        return
    fix = ("set attack.prior_autotrain = true (trains it on the public aux split, the held-out half of the test "
           "split) or attack.prior_path to a trained prior file")
    base = cfg.attack.prior_path or default_prior_path(run_dir, cfg.data.dataset)
    for arch in archs:
        path = arch_prior_path(base, arch)
        if path.is_file():
            continue
        if cfg.attack.prior_path:
            what = "" if arch == DEFAULT_ARCH else f" (its {arch} decoder's file {str(path)!r})"
            raise ConfigError(f"attack.prior_path: {cfg.attack.prior_path!r}{what} is not a file; "
                              f"attack.inversion = {inversion!r} needs a trained prior: {fix}")
        raise ConfigError(f"attack.inversion: {inversion!r} needs a trained generative prior and "
                          f"attack.prior_path is empty (default {str(path)!r} does not exist); {fix}")


def _check_lpips(weights: str) -> None:
    if weights and not Path(weights).is_file():
        raise ConfigError(f"attack.lpips_weights: {weights!r} is not a file; give a local torchvision alexnet / "
                          "vgg16 state dict, or '' to report LPIPS as unavailable (weights are never downloaded)")
