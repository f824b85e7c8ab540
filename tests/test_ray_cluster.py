"""Issue 37, sweeps and attacks on a Ray cluster: ``fedsim sweep --ray`` on a real multi-node cluster on 127.0.0.1
(a head without CPUs and two worker nodes of one CPU each, ``tests/raycluster.py``, shared by the module), the
``attack.backend = "ray"`` scheduler on the same cluster, and the one-line refusals (an address nobody answers at, a
cluster without the GPUs asked for, ``[sweep.ray]`` typos)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedsim.core.config import ConfigError
from fedsim.lab.sweep.ray_pool import RaySpec, ray_spec
from tests.processes import processes_under

ROOT = Path(__file__).resolve().parents[1]

#: 2 settings x 2 seeds of the smoke preset, as small as it gets: 1 round, 2 clients of 32 examples, attacks on
SMALL = """[sweep]
name = "ray_small"
base = "{base}"
parameter = "defense.update.topk_ratio"
values = [0.0, 0.5]
seeds = [0, 1]

[run]
num_rounds = 1
num_clients = 2

[data]
max_examples_per_client = 32

[train]
min_train_nodes = 2

[attack]
label_methods = "ilrg"
inversion_steps = 5
"""

#: fields that depend on timing, not on what was computed (none of these is in today's rows; named for the future);
#: paths into the run folders (``run``, ``best_image``, ``inversion_pick.image``) are compared below the sweep folder
TIMING = {"seconds", "wall_s", "duration_s", "attack_seconds", "elapsed_s"}


def _sweep(argv: list[str], env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    import os

    cmd = [sys.executable, "-m", "fedsim.lab.cli", "sweep", *argv, "--quiet"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def _strip(value, folder: Path):
    if isinstance(value, dict):
        return {k: _strip(v, folder) for k, v in value.items() if k not in TIMING and "second" not in k}
    if isinstance(value, list):
        return [_strip(v, folder) for v in value]
    if isinstance(value, str):
        return value.replace(str(folder), "DIR")
    return value


# ---- fast: the sweep file's ray key and the refusals that need no cluster ---------------------------------------

def test_ray_spec_from_the_sweep_file_and_the_cli():
    assert ray_spec(None, "f") is None
    assert ray_spec("auto", "f") == RaySpec("auto")
    spec = ray_spec({"num_gpus": 0.5, "memory_gb": 4}, "f", "10.0.0.1:6379")
    assert spec == RaySpec("10.0.0.1:6379", 1.0, 0.5, 4.0, "cluster")
    assert spec.task_options()["num_cpus"] == 0.0  # a joined federation's task holds no CPU (Flower's pool does)
    assert spec.federation_env("10.0.0.1:6379") == {"RAY_ADDRESS": "10.0.0.1:6379", "FEDSIM_RAY_INIT_ARGS": ""}
    assert RaySpec(num_cpus=2, num_gpus=0.5, simulation="node").federation_env("x")["FEDSIM_RAY_INIT_ARGS"] == \
        "init-args-num-cpus=2 init-args-num-gpus=1"
    for bad, says in (({"num_gpu": 1}, "'num_gpu' is not a key"), ({"num_cpus": -1}, "num_cpus"),
                      ({"simulation": "cloud"}, "simulation"), (3, "ray must be an address")):
        with pytest.raises(ConfigError, match=says):
            ray_spec(bad, "f")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        ray_spec(None, "f", "nohost")


def test_unreachable_ray_address_is_one_line_before_any_work(tmp_path):
    from tests.processes import processes_under  # noqa: F811
    from fedsim.lab.flower_runtime import free_port

    sweep = tmp_path / "s.toml"
    sweep.write_text(SMALL.format(base=ROOT / "configs" / "smoke.toml"))
    proc = _sweep([str(sweep), "--out", str(tmp_path / "o"), "--ray", f"127.0.0.1:{free_port()}"], timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert "no Ray cluster answers there" in err[0] and "ray start --head" in err[0]
    assert not list((tmp_path / "o").rglob("DONE")) and not processes_under(tmp_path)


# ---- slow: one real cluster for the module -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    from tests.raycluster import LoopbackCluster

    c = LoopbackCluster(workers=2)
    try:
        yield c
    finally:
        import ray

        ray.shutdown()
        left = c.stop()
        assert not left, f"cluster processes left behind: {left}"


@pytest.mark.slow
def test_sweep_on_the_cluster_equals_the_local_sweep(cluster, tmp_path):
    """2 settings x 2 seeds with --ray (attacks as Ray tasks too) give the local pool's rows, minus timing fields;
    the federations ran on both worker nodes; no Flower or Ray process of the runs is left."""
    sweep = tmp_path / "s.toml"
    sweep.write_text(SMALL.format(base=ROOT / "configs" / "smoke.toml"))
    local = _sweep([str(sweep), "--out", str(tmp_path / "local"), "--parallel", "2"])
    assert local.returncode == 0, local.stdout[-2000:] + local.stderr[-3000:]
    remote = _sweep([str(sweep), "--out", str(tmp_path / "ray"), "--ray", cluster.address,
                     "--set", "attack.backend=ray"])
    assert remote.returncode == 0, remote.stdout[-2000:] + remote.stderr[-3000:]

    def rows(folder):
        return [json.loads(line) for line in (folder / "sweep.jsonl").read_text().splitlines()]

    a, b = rows(tmp_path / "local"), rows(tmp_path / "ray")
    assert len(a) == len(b) == 2 and all(r["seeds_run"] == 2 for r in b)
    assert _strip(a, tmp_path / "local") == _strip(b, tmp_path / "ray")  # every measurement equal
    tasks = [json.loads(line) for line in (tmp_path / "ray" / "ray_tasks.jsonl").read_text().splitlines()]
    assert len(tasks) == 4 and len({t["node_id"] for t in tasks}) >= 2  # federations ran on more than one node
    assert all(t["driver_s"] >= t["task_s"] for t in tasks)
    assert (tmp_path / "ray" / "sweep.html").is_file()
    again = _sweep([str(sweep), "--out", str(tmp_path / "ray"), "--ray", cluster.address])
    assert again.returncode == 0 and len((tmp_path / "ray" / "ray_tasks.jsonl").read_text().splitlines()) == 4
    assert not processes_under(tmp_path)


@pytest.mark.slow
def test_cluster_without_the_gpus_asked_for_is_one_line(cluster, tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text(SMALL.format(base=ROOT / "configs" / "smoke.toml") + "\n[sweep.ray]\nnum_gpus = 1\n")
    proc = _sweep([str(sweep), "--out", str(tmp_path / "o"), "--ray", cluster.address], timeout=300)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert "num_gpus=1" in err[0] and "0 GPUs" in err[0]


@pytest.mark.slow
def test_attacks_as_ray_tasks_give_the_inline_rows_errors_and_timeouts(cluster, tmp_path):
    """attack.backend = "ray": the same rows as inline attacks; an injected crash and a timeout are attack_error
    rows, as with the process pool."""
    import ray

    from fedsim.core.captures import iter_captures, load_update
    from fedsim.core.results import read_jsonl
    from fedsim.server.scheduler import AttackScheduler
    from tests.runfolder import make_run

    ray.init(address=cluster.address, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    _, run = make_run(tmp_path / "run")

    def attack(cfg):
        scheduler = AttackScheduler(cfg, run)
        (run / "metrics.jsonl").unlink(missing_ok=True)
        for path in iter_captures(run):
            scheduler(load_update(path))
        scheduler.close()
        return [{k: v for k, v in r.items() if "second" not in k} for r in read_jsonl(run / "metrics.jsonl")]

    cfg, _ = make_run(tmp_path / "run")
    inline = attack(cfg)
    on_ray = attack(cfg.replace(**{"attack.backend": "ray"}))
    assert len(inline) == 6 and sorted(map(json.dumps, inline)) == sorted(map(json.dumps, on_ray))
    crash = attack(cfg.replace(**{"attack.backend": "ray", "faults.enabled": True, "faults.attack_crash": "1"}))
    errors = [r for r in crash if r["kind"] == "attack_error"]
    assert [r["client"] for r in errors] == [1] and "injected attack crash" in errors[0]["error"]
    slow = attack(cfg.replace(**{"attack.backend": "ray", "attack.timeout": 1.0, "attack.inversion": "ig",
                                 "attack.inversion_steps": 100000, "attack.max_attacks": 1}))
    assert [r["kind"] for r in slow] == ["attack_error"] and "timed out after 1.0s" in slow[0]["error"]
