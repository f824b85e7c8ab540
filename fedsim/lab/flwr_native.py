"""``make flwr-run``: Flower's own CLI (``flwr run .``) on a preset, then stop the local SuperLink it leaves.

``flwr run`` against the local simulation federation starts a detached ``flower-superlink`` whose files live in
``FLWR_HOME`` and keeps it running after the run. It is found by its command line (its ``--log-file`` /
``--database`` arguments lie under our ``FLWR_HOME``) through ``/proc`` and stopped by PID with its process
group; nothing else is matched (the old ``pkill -f`` pattern also matched make's own shell). The exit code is
the run's: ``flwr run --stream`` itself exits 0 even when the simulation raised, so the run folder decides — no
``DONE`` means the run failed (exit 1), lost rounds exit 3 (``RoundsLost``), each with one line.

The run folder (``run.out_dir``, else ``runs/<run.name>``, anchored as ``fedsim.core.paths`` says: ``$FEDSIM_ROOT``
or the current folder) is prepared here as for ``fedsim run`` (owned: a folder without fedsim's mark is refused,
exit 2) and the resolved config, with the absolute ``run.out_dir``, is what ``flwr run`` submits: the server and
the clients write one folder whatever their working directory. The app is the code-free folder of
``fedsim.lab.flower_app`` (in ``FLWR_HOME``), so this works the same for a pip-installed fedsim and a checkout.

    python -m fedsim.lab.flwr_native CONFIG NODES [FLWR_HOME] [--set SECTION.KEY=VALUE ...]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fedsim.core.config import load_config, parse_overrides
from fedsim.core.errors import FedsimError
from fedsim.core.paths import flwr_home_default, run_dir
from fedsim.lab.cli import check_complete
from fedsim.lab.flower_app import write_app
from fedsim.lab.flower_runtime import flower_env
from fedsim.lab.presets import resolve as resolve_preset
from fedsim.lab.preflight import preflight
from fedsim.lab.runner import prepare_run_dir
from fedsim.core.runfolder import RunFolder


def superlink_pids(flwr_home: Path) -> list[int]:
    """PIDs of ``flower-superlink`` processes whose arguments point into ``flwr_home`` (Linux ``/proc``)."""
    home = str(Path(flwr_home).resolve())
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if any(Path(a).name == "flower-superlink" for a in args[:2]) and any(a.startswith(home) for a in args):
            pids.append(int(entry.name))
    return pids


def stop_pids(pids: list[int], timeout: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.killpg(os.getpgid(pid), sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)
        pids = [p for p in pids if Path(f"/proc/{p}").exists()]
        if not pids:
            return


USAGE = "usage: python -m fedsim.lab.flwr_native CONFIG NODES [FLWR_HOME] [--set SECTION.KEY=VALUE ...]"


def _parse(args: list[str]) -> tuple[str, int, Path, list[str]] | None:
    """``CONFIG NODES [FLWR_HOME] [--set k=v ...]`` -> (config, nodes, flwr_home, overrides), or None."""
    sets: list[str] = []
    rest: list[str] = []
    it = iter(args)
    for a in it:
        if a == "--set":
            sets.append(next(it, ""))
        else:
            rest.append(a)
    if len(rest) not in (2, 3) or not rest[1].isdigit():
        return None
    home = Path(rest[2] if len(rest) == 3 else flwr_home_default()).resolve()
    return rest[0], int(rest[1]), home, sets


def main(argv: list[str] | None = None) -> int:
    parsed = _parse(list(sys.argv[1:] if argv is None else argv))
    if parsed is None:
        print(USAGE, file=sys.stderr)
        return 2
    config, nodes, flwr_home, sets = parsed
    try:
        cfg = load_config(resolve_preset(config), parse_overrides(sets))
        plan = preflight(cfg)
        # one absolute run folder for the ServerApp (run from Flower's installed copy of the app) and the
        # ClientApps: prepared (owned, cleared) here, and submitted in the resolved config.toml's run.out_dir
        cfg, out = prepare_run_dir(cfg, run_dir(cfg), plan)
    except FedsimError as exc:
        print(f"fedsim: {exc}", file=sys.stderr)
        return exc.exit_code
    folder = RunFolder(out)
    flwr_home.mkdir(parents=True, exist_ok=True)
    env = flower_env(flwr_home)
    flwr = str(Path(sys.executable).parent / "flwr")
    app = write_app(flwr_home / "fedsim-app")  # a pyproject.toml only: the apps import the installed fedsim
    try:
        rc = subprocess.call([flwr, "run", ".", "--run-config", str(folder.config),
                              "--federation-config", f"num-supernodes={nodes}", "--stream"],
                             env=env, cwd=app)
    finally:
        stop_pids(superlink_pids(flwr_home))
    if rc == 0 and not folder.done.exists():
        print(f"fedsim: the run did not finish (no {folder.done}); see the Flower output above", file=sys.stderr)
        return 1
    try:
        check_complete(folder)
    except FedsimError as exc:
        print(f"fedsim: {exc}", file=sys.stderr)
        return exc.exit_code
    return rc


if __name__ == "__main__":
    sys.exit(main())
