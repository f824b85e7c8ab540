"""Attack hook: hands captured updates to the attack pipeline (filled in by the attack issues)."""

from __future__ import annotations

from pathlib import Path

from fedsim.core.config import ExperimentConfig


def build_attack_hook(cfg: ExperimentConfig, run_dir: Path, resolved=None):
    """Return a sink with ``__call__(update)`` and ``close()``, or None when attacks are off; ``resolved``: the
    run as loaded (``fedsim.core.resolved.ResolvedRun``), whose plan the attacks take."""
    if not cfg.attack.enabled:
        return None
    from fedsim.server.scheduler import AttackScheduler

    return AttackScheduler(cfg, run_dir, resolved)
