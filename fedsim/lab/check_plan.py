"""What ``fedsim check`` says a config will run: clients x rounds, attacked updates, methods, an estimated wall
time, and the keys that differ from the defaults. The disk estimate is ``fedsim.lab.check``'s.

The time estimate is a documented simple model, not a measurement of this config. Its constants were measured on
this project's 2-core x86-64 CPU machine (torch CPU) while other work ran beside it, so an idle machine is faster
and a busy one slower (the same replays under load 15 took 4x STEP_S); a larger machine, a GPU or a model far from
the demo's changes them most:

* ``START_S``: what a run costs besides its rounds and attacks (imports, preflight, Flower's SuperLink and Ray,
  the first round's worker start, the report): ``make demo`` from a fresh clone on 2026-12-07 took 9 min 43 s, of
  which 9 min 14 s from ``config.toml`` written to ``DONE`` (its run folder's file times), and its first round
  took 12 s longer than the others (29 + 12 s).
* ``ROUND_CLIENT_S``: one round's cost per trained client (messages, its share of the central evaluation,
  captures): that demo's rounds took 3.0 s for 5 clients of FedSGD on batches of 8 (``time`` of its utility rows,
  two attack workers beside them); ``fedsim run demo --out /tmp/me/runs/m1 --quiet --set attack.enabled=false
  --set run.num_rounds=10 --set attack.rounds=1,10`` gave 3.6 s under load average 15.
* ``SAMPLE_S``: one training example's forward and backward on the demo's model (convnet, width 16, MNIST,
  ``REF_PARAMS`` parameters), scaled by the configured model's parameter count over it: ``fedsim run demo --out
  /tmp/me/runs/m2 --quiet --set attack.enabled=false --set run.num_rounds=3 --set attack.rounds=1 --set
  train.algorithm=fedavg --set train.batch_size=32`` (4000 examples a round: rounds 2-3 took 16.6 and 19.1 s,
  load average 15), minus 5 x ``ROUND_CLIENT_S``.
* ``LABEL_S`` / ``STEP_S``: one label method on one update (the demo's rows: aux-nnls 0.3-0.6 s, rlg under 0.1 s,
  the others under 0.01 s), and one inversion step on 8 images of the demo's model, scaled by sqrt(images / 8)
  (``_image_factor``) and the parameter ratio: ig-shadow 110-141 s for 600 steps in that demo; ig 0.12 s a step
  on 16 images of the width-8 convnet (9,098 parameters) in ``fedsim sweep configs/sweep_bound.toml``
  (2026-12-07), i.e. 0.12 / sqrt(2) / (9,098 / 20,490) = 0.19 s. A method without its own constant is priced as
  ig and the estimate says so; a replay of ig-shadow at 100 steps cost more per step than at 600 (its shadow
  search does not shrink with the steps): the model is linear in the steps, the method is not.

The attack queue is simulated as the scheduler runs it (``server/scheduler.py``): each attacked update is
submitted when its round ends to ``attack.workers`` workers first come first served (0: inline, the round waits);
the run ends when training and the last attack have. Client sampling gives the expected number of attacked
updates, ``attack.max_attacks`` caps it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fedsim.core.config import ExperimentConfig
from fedsim.core.lists import comma_list

START_S = 40.0  # seconds; each constant's source is in the module docstring
ROUND_CLIENT_S = 0.6
SAMPLE_S = 0.0037
REF_PARAMS = 20_490  # parameters of the demo preset's model (convnet, width 16, MNIST 1x28x28, 10 classes)
LABEL_S = {"aux-nnls": 0.5, "rlg": 0.1}  # others: DEFAULT_LABEL_S
DEFAULT_LABEL_S = 0.05
STEP_S = {"ig": 0.19, "ig-shadow": 0.21}  # seconds per inversion step on 8 images of the demo's model
REF_IMAGES = 8


@dataclass(frozen=True)
class TimeEstimate:
    """Seconds of the parts of a run (the model above) and the wall time they add up to."""

    start_s: float
    training_s: float
    attacks: float  # expected attacked updates
    attack_s: float  # seconds per attacked update
    wall_s: float
    unmeasured: tuple[str, ...] = ()  # methods priced at ig's per-step cost
    ratio: float = 1.0  # the model's parameters over REF_PARAMS

    def line(self) -> str:
        queue = (f" + {_n(self.attacks)} attacks x {duration(self.attack_s)} in the attack queue"
                 if self.attacks else "")
        note = f"; {', '.join(self.unmeasured)} priced as ig (not measured)" if self.unmeasured else ""
        return (f"time (estimate, a simple model: fedsim/lab/check_plan.py): about {duration(self.wall_s)} "
                f"(start {duration(self.start_s)} + training {duration(self.training_s)}{queue}){note}")


def duration(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 05 min``."""
    s = int(round(seconds))
    if seconds < 0.5:
        return "under 1 s"
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _n(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def _names(value: Any) -> list[str]:
    """A method list as the config holds it: a comma-separated string or a list (``none`` left out)."""
    return [v for v in comma_list(value) if v.lower() != "none"]


def label_methods(cfg: ExperimentConfig) -> list[str]:
    return _names(cfg.attack.label_methods)


def inversion_method(cfg: ExperimentConfig) -> str | None:
    name = str(cfg.attack.inversion or "none").strip()
    return None if name.lower() == "none" else name


def _sampled(cfg: ExperimentConfig) -> int:
    from fedsim.lab.check import _sampled as sampled

    return sampled(cfg)


def _secagg(cfg: ExperimentConfig) -> bool:
    from fedsim.lab.check import _secagg as secagg

    return secagg(cfg)


def attacked_per_round(cfg: ExperimentConfig, live: bool = True) -> list[float]:
    """Expected attacked updates of each round 1..R (client sampling), ``attack.max_attacks`` applied in order;
    ``live=False``: the captures a replay attacks (the same selection, whether or not ``attack.enabled``)."""
    from fedsim.core.capture_plan import attack_selection
    from fedsim.core.config_checks import AGGREGATE_CLIENT

    if live and not cfg.attack.enabled:
        return [0.0] * cfg.run.num_rounds
    rounds, clients = attack_selection(cfg)
    n, secagg, sampled = cfg.run.num_clients, _secagg(cfg), _sampled(cfg)
    out, left = [], float(cfg.attack.max_attacks or math.inf)
    for r in range(1, cfg.run.num_rounds + 1):
        if rounds is not None and r not in rounds:
            out.append(0.0)
            continue
        if secagg:
            k = 1.0 if clients is None or AGGREGATE_CLIENT in clients else 0.0
        else:
            chosen = n if clients is None else len([c for c in clients if 0 <= c < n])
            k = chosen * sampled / n
        k = min(k, left)
        left -= k
        out.append(k)
    return out


def _model_params(cfg: ExperimentConfig) -> int:
    from fedsim.core.experiment import make_model

    return sum(p.numel() for p in make_model(cfg).parameters())


def _samples_per_round(cfg: ExperimentConfig) -> float:
    """Examples trained per round: the sampled clients' local steps (``fedsim.lab.check.samples_per_update``)."""
    from fedsim.core.experiment import client_indices
    from fedsim.lab.check import samples_per_update

    n = cfg.run.num_clients
    per = [samples_per_update(cfg, len(client_indices(cfg, c, n))) for c in range(n)]
    return sum(per) / n * _sampled(cfg)


def _inversion_images(cfg: ExperimentConfig) -> int:
    """Images an inversion reconstructs per update: the examples the update covers (a FedSGD batch; under FedAvg
    every example the client trained on, its partition or ``train.max_local_steps`` batches), for the median
    client. More than ``attack.max_inversion_images`` and the inversion does not apply: 0."""
    from statistics import median

    from fedsim.core.experiment import client_indices

    n = cfg.run.num_clients
    size = int(median(len(client_indices(cfg, c, n)) for c in range(n)))
    b = cfg.train.batch_size
    if cfg.train.algorithm == "fedsgd":
        covered = min(b, size)
    else:
        covered = min(size, cfg.train.max_local_steps * b) if cfg.train.max_local_steps else size
    cap = cfg.attack.max_inversion_images
    return covered if not cap or covered <= cap else 0


def _image_factor(cfg: ExperimentConfig) -> float:
    """An inversion step's cost relative to 8 images: sqrt(images / 8). On this CPU ig's step on the width-8
    convnet took 0.12 s for 16 images (sweep_bound) and 0.17-0.43 s for 64 (``fedsim run smoke``, load average
    16): far below linear, about the square root."""
    return math.sqrt(_inversion_images(cfg) / REF_IMAGES)


def attack_seconds(cfg: ExperimentConfig, ratio: float) -> tuple[float, tuple[str, ...]]:
    """Seconds of one attacked update (its label methods and inversion), and the methods priced as ig."""
    labels = sum(LABEL_S.get(m, DEFAULT_LABEL_S) for m in label_methods(cfg))
    inv = inversion_method(cfg)
    if inv is None:
        return labels, ()
    step = STEP_S.get(inv, STEP_S["ig"])
    images = _image_factor(cfg)
    return labels + cfg.attack.inversion_steps * step * images * ratio, (() if inv in STEP_S else (inv,))


def queue_end(submitted: list[tuple[float, float]], workers: int) -> float:
    """When the last of ``(submit time, count)`` attacks of ``attack_s`` each ends on ``workers`` first-come
    workers; the count may be fractional (an expected number); ``attack_s`` is folded in by the caller."""
    free = [0.0] * max(1, workers)
    end = 0.0
    for at, cost in submitted:
        i = min(range(len(free)), key=free.__getitem__)
        free[i] = max(free[i], at) + cost
        end = max(end, free[i])
    return end


def estimate_time(cfg: ExperimentConfig) -> TimeEstimate:
    """The model of the module docstring for ``cfg`` (builds the model once, reads the partition sizes)."""
    ratio = max(_model_params(cfg), 1) / REF_PARAMS
    per_round = ROUND_CLIENT_S * _sampled(cfg) + SAMPLE_S * _samples_per_round(cfg) * ratio
    attacks = attacked_per_round(cfg)
    attack_s, unmeasured = attack_seconds(cfg, ratio)
    total_attacks = sum(attacks)
    workers = cfg.attack.workers
    if workers <= 0 and cfg.attack.backend != "ray":  # inline: each round waits for its attacks
        training = cfg.run.num_rounds * per_round + total_attacks * attack_s
        return TimeEstimate(START_S, training, total_attacks, attack_s, START_S + training, unmeasured, ratio)
    training = cfg.run.num_rounds * per_round
    jobs: list[tuple[float, float]] = []
    for r, k in enumerate(attacks, start=1):
        whole, part = int(k), k - int(k)
        jobs += [(r * per_round, attack_s)] * whole + ([(r * per_round, attack_s * part)] if part else [])
    wall = START_S + max(training, queue_end(jobs, workers))
    return TimeEstimate(START_S, training, total_attacks, attack_s, wall, unmeasured, ratio)


def runs_line(cfg: ExperimentConfig) -> str:
    """``runs: 5 clients x 80 rounds of fedsgd (5 trained per round); attacked updates: 8 (rounds 1, 10, ...)``."""
    attacks = attacked_per_round(cfg)
    rounds = [r for r, k in enumerate(attacks, start=1) if k]
    shown = ", ".join(map(str, rounds[:8])) + (", ..." if len(rounds) > 8 else "")
    attacked = (f"attacked updates: {_n(round(sum(attacks), 1))}" + (" expected" if _sampled(cfg) <
                                                                       cfg.run.num_clients else "")
                + f" (round{'s' if len(rounds) > 1 else ''} {shown})") if rounds else "attacked updates: none"
    return (f"runs: {cfg.run.num_clients} clients x {cfg.run.num_rounds} rounds of {cfg.train.algorithm} "
            f"({_sampled(cfg)} trained per round); {attacked}")


def methods_line(cfg: ExperimentConfig) -> str:
    if not cfg.attack.enabled:
        return "methods: none (attack.enabled = false; fedsim attack RUN replays attacks on the captures later)"
    inv = inversion_method(cfg)
    images = _inversion_images(cfg) if inv else 0
    what = (f"{inv} ({cfg.attack.inversion_steps} steps on {images} images)" if images else
            f"{inv} (not applicable: an update covers more examples than attack.max_inversion_images = "
            f"{cfg.attack.max_inversion_images})" if inv else "none")
    return f"methods: labels {', '.join(label_methods(cfg)) or 'none'}; inversion {what}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value).replace("'", '"') if '"' not in value else repr(value)
    return str(value)


def differing_keys(cfg: ExperimentConfig) -> list[str]:
    """``key = value (default d)`` for every key whose resolved value differs from ``ExperimentConfig()``'s
    (``run.out_dir`` left out: a run sets it)."""
    default = ExperimentConfig().to_flat()
    out = []
    for key, value in cfg.to_flat().items():
        if key != "run.out_dir" and default.get(key, object()) != value:
            out.append(f"{key} = {_toml_value(value)} (default {_toml_value(default.get(key))})")
    return out


def plan_lines(cfg: ExperimentConfig, disk_line: str) -> list[str]:
    """What will run, the estimates and the keys that differ from the defaults (after the verdict line)."""
    diff = differing_keys(cfg)
    lines = [runs_line(cfg), methods_line(cfg), estimate_time(cfg).line(), disk_line,
             f"differs from the defaults ({len(diff)} key{'' if len(diff) == 1 else 's'}):"]
    return lines + [f"  {d}" for d in diff]


def federation_seconds(cfg: ExperimentConfig, replay: tuple[str, ...] = ()) -> float:
    """One sweep federation's estimate: its run, then each replayed inversion method on every update the attack
    selects (``fedsim.lab.sweep.execute.replay``: one after the other, in the sweep's process)."""
    est = estimate_time(cfg)
    images = _image_factor(cfg)
    per_update = sum(cfg.attack.inversion_steps * STEP_S.get(m, STEP_S["ig"]) * images * est.ratio for m in replay)
    return est.wall_s + per_update * sum(attacked_per_round(cfg, live=False))
