"""``fedsim attack RUN_DIR``: re-run attacks on saved captures (e.g. a stronger inversion) and append rows.

Captures load with safetensors only; nothing is unpickled. Uses the run's resolved ``config.toml`` with
``--set attack.key=value`` overrides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedsim.attacking import attack_and_score
from fedsim.captures import iter_captures
from fedsim.config import ConfigError, load_config, parse_selection
from fedsim.results import append_jsonl


def replay_attacks(run_dir: Path, overrides: dict[str, Any], quiet: bool = False) -> int:
    """Attack every selected capture of ``run_dir``; returns the number of updates attacked."""
    bad = [k for k in overrides if not k.startswith("attack.")]
    if bad:
        raise ConfigError(f"{bad[0]}: fedsim attack only takes attack.* overrides")
    cfg = load_config(run_dir / "config.toml", overrides).replace(**{"run.out_dir": str(run_dir.resolve())})
    rounds = parse_selection("attack.rounds", cfg.attack.rounds)
    clients = parse_selection("attack.clients", cfg.attack.clients)
    files = list(iter_captures(run_dir))
    if not files:
        raise ConfigError(f"{run_dir}: no captures found under captures/ (was capture.enabled false?)")
    done = 0
    for path in files:
        r, c = int(path.parent.name.split("_")[1]), int(path.stem.split("_")[1])
        if (rounds is not None and r not in rounds) or (clients is not None and c not in clients):
            continue
        if cfg.attack.max_attacks and done >= cfg.attack.max_attacks:
            break
        rows = attack_and_score(path, cfg.to_flat(), run_dir)
        for row in rows:
            append_jsonl(run_dir / "metrics.jsonl", {**row, "replay": True})
        done += 1
        if not quiet:
            summary = ", ".join(f"{row['method']}:{'ok' if row.get('ok') else 'failed'}" for row in rows)
            print(f"round {r} client {c}: {summary}")
    return done
