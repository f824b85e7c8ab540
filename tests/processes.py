"""Find live processes that belong to one test's run folder (other runs may share the machine)."""

from pathlib import Path


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
