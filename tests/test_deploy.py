"""Deployment: docker-compose.yml parsed for consistency, its service commands run as local processes, and
``fedsim deploy-local`` (SuperLink + 2 SuperNodes on 127.0.0.1) writing the same run folder as the simulation."""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.processes import processes_under

from fedsim.core.captures import iter_captures, load_update
from fedsim.core.results import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


def _compose():
    return yaml.safe_load(COMPOSE.read_text())


def _cmd(service) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def _opt(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def test_compose_is_consistent():
    spec = _compose()
    services = spec["services"]
    link = services["superlink"]
    link_cmd = _cmd(link)
    assert link_cmd[0] == "flower-superlink" and "--simulation" not in link_cmd
    port = _opt(link_cmd, "--port")
    assert port and any(str(p).split(":")[-1] == port for p in link.get("ports", []))
    nodes = {name: s for name, s in services.items() if _cmd(s)[0] == "flower-supernode"}
    assert len(nodes) >= 2
    pids = []
    for name, s in nodes.items():
        cmd = _cmd(s)
        assert _opt(cmd, "--superlink") == f"superlink:{port}", name
        assert "superlink" in s.get("depends_on", {}), name
        conf = dict(kv.split("=", 1) for kv in shlex.split(_opt(cmd, "--node-config")))
        assert int(conf["num-partitions"]) == len(nodes), name
        pids.append(int(conf["partition-id"]))
        assert ("--insecure" in cmd) == ("--insecure" in link_cmd), name
    assert sorted(pids) == list(range(len(nodes)))
    # safe by default: the SuperLink's port (Fleet + Control API) is published on the host's loopback only
    for p in link.get("ports", []):
        assert str(p).startswith("127.0.0.1:"), f"superlink port {p} is published on every interface"
    # every container has its own run volume at /app/runs: the server never mounts a client's ground truth, and
    # no client mounts another's
    volumes = {}
    for name in ["superlink", *nodes]:
        mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in services[name].get("volumes", [])}
        assert "/app/runs" in mounts and mounts["/app/runs"] in spec.get("volumes", {}), name
        volumes[name] = mounts["/app/runs"]
    assert len(set(volumes.values())) == len(volumes), volumes
    for s in services.values():
        if "build" in s:
            assert (ROOT / s["build"].get("dockerfile", "Dockerfile")).exists()


def test_dockerfile_installs_the_project():
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "download.pytorch.org/whl/cpu" in text and "pip install" in text and "-e ." in text


def _run(args, timeout=300):
    return subprocess.run([sys.executable, "-m", "fedsim.lab.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_deploy_local_rejects_contradicting_nodes(tmp_path):
    """--nodes decides the federation size; only an explicit contradicting --set is refused."""
    proc = _run(["deploy-local", str(ROOT / "configs" / "smoke.toml"), "--nodes", "2", "--out", str(tmp_path / "x"),
                 "--set", "run.num_clients=3"])
    assert proc.returncode == 2 and "run.num_clients" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.deployment
@pytest.mark.slow
def test_compose_commands_run_as_local_processes(tmp_path):
    """The SuperLink and SuperNode commands of docker-compose.yml, with `superlink` mapped to 127.0.0.1."""
    from fedsim.lab.flower_runtime import flower_env, free_port, stop_process

    services = _compose()["services"]
    port = str(free_port())
    env = flower_env(tmp_path / ".flwr")
    (tmp_path / ".flwr").mkdir()
    procs = []
    try:
        cmd = [c if c != _opt(_cmd(services["superlink"]), "--port") else port for c in _cmd(services["superlink"])]
        cmd = [("127.0.0.1" if c == "0.0.0.0" else c) for c in cmd]
        log = (tmp_path / "superlink.log").open("w")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                      cwd=tmp_path))
        nodes = [n for n, s in services.items() if _cmd(s)[0] == "flower-supernode"]
        time.sleep(3)
        for name in nodes:
            cmd = [f"127.0.0.1:{port}" if c.startswith("superlink:") else c for c in _cmd(services[name])]
            cmd += ["--port", str(free_port())]
            log = (tmp_path / f"{name}.log").open("w")
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, cwd=tmp_path))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if (tmp_path / "superlink.log").read_text().count("Activated node_id") >= len(nodes):
                break
            assert all(p.poll() is None for p in procs), (tmp_path / "superlink.log").read_text()[-2000:]
            time.sleep(0.5)
        else:
            pytest.fail("SuperNodes did not connect: " + (tmp_path / "superlink.log").read_text()[-2000:])
    finally:
        for p in reversed(procs):
            stop_process(p)
    time.sleep(1)
    assert processes_under(tmp_path) == []


@pytest.mark.deployment
@pytest.mark.slow
def test_deploy_local_two_nodes(tmp_path):
    out = tmp_path / "deploy"
    proc = _run(["deploy-local", str(ROOT / "configs" / "smoke.toml"), "--nodes", "2", "--out", str(out), "--quiet",
                 "--set", "attack.enabled=false"], timeout=400)  # --nodes alone sets the federation size
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = read_jsonl(out / "metrics.jsonl")
    utility = sorted((r for r in rows if r["kind"] == "utility"), key=lambda r: r["round"])
    assert [r["round"] for r in utility] == [0, 1, 2]
    assert set(utility[0]) >= {"kind", "round", "test_accuracy", "test_loss", "time"}
    assert utility[-1]["test_accuracy"] > utility[0]["test_accuracy"]
    caps = {(load_update(p).server_round, load_update(p).client_id) for p in iter_captures(out)}
    assert caps == {(r, c) for r in (1, 2) for c in (0, 1)}
    assert len(list((out / "audit").rglob("*.safetensors"))) == 4
    assert (out / "config.toml").exists() and (out / "DONE").exists()
    assert (out / "logs" / "supernode_0.log").exists()
    assert processes_under(tmp_path) == []


def _tree_with(marker: str) -> set[int]:
    """PIDs whose command line contains ``marker``, plus all their descendants (not this test's own)."""
    table = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            table[int(p.name)] = (ppid, cmd)
    me = {os.getpid(), os.getppid()}
    found = {pid for pid, (_, cmd) in table.items() if marker in cmd and pid not in me}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def _stop_tree(marker: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _tree_with(marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)


@pytest.mark.slow
def test_simulation_joins_existing_ray_cluster():
    """`ray start --head` on loopback with its own temp dir; `fedsim run` with RAY_ADDRESS joins it."""
    from fedsim.lab.flower_runtime import free_port

    ray = Path(sys.executable).parent / "ray"
    tmp = Path(tempfile.mkdtemp(prefix="fsray", dir="/tmp"))  # short: Ray's socket paths are length-limited
    port = free_port()
    marker = str(tmp / "session")
    try:
        started = subprocess.run([str(ray), "start", "--head", "--num-cpus", "2", "--node-ip-address", "127.0.0.1",
                                  "--port", str(port), "--include-dashboard", "false", "--disable-usage-stats",
                                  "--temp-dir", str(tmp)], capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stderr[-2000:]
        logs = tmp / "session_latest" / "logs"
        before = {p.name for p in logs.iterdir()}
        env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}"}
        out = tmp / "run"
        proc = subprocess.run([sys.executable, "-m", "fedsim.lab.cli", "run", str(ROOT / "configs" / "smoke.toml"),
                               "--out", str(out), "--quiet", "--set", "data.max_examples_per_client=150"],
                              capture_output=True, text=True, timeout=400, cwd=ROOT, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert [r["round"] for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "utility"] == [0, 1, 2]
        new = {p.name for p in logs.iterdir()} - before
        assert any(n.startswith("python-core-driver") for n in new), sorted(new)  # the simulation joined
        assert any(n.startswith("worker-") for n in new), sorted(new)  # ClientApp actors ran in this cluster
    finally:
        _stop_tree(marker)
        shutil.rmtree(tmp, ignore_errors=True)
    assert not _tree_with(marker)
