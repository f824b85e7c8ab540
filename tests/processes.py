"""Run ``fedsim run`` as a user does (a subprocess through the CLI: preflight, SuperLink, Flower simulation with
the production ServerApp/ClientApp) and find live processes that belong to one test's run folder (other runs may
share the machine)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fedsim_run(config: Path, out: Path, *sets: str, timeout: float = 540) -> subprocess.CompletedProcess:
    """``fedsim run CONFIG --out OUT --quiet --set KEY=VALUE ...``; asserts exit 0 (with the output's tail)."""
    cmd = [sys.executable, "-m", "fedsim.lab.cli", "run", str(config), "--out", str(out), "--quiet"]
    for item in sets:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def processes_under(folder: Path) -> list[str]:
    """Live processes whose FLWR_HOME lies inside ``folder`` (ours only: other runs may share the machine)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat != "Z" and any(e.startswith(b"FLWR_HOME=" + str(folder).encode()) for e in env):
            found.append(f"{proc.name} {args}")
    return found
