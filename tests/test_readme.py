"""Every README command block marked runnable is run as a user would (repo root, the venv's bin on PATH).

A block is runnable when the line before its opening fence is ``<!-- runnable -->`` (each command must exit 0)
or ``<!-- runnable: expect-error -->`` (each command must fail the way fedsim fails: a non-zero exit and one
``fedsim: ...`` line on stderr). Only quick commands are marked (``--help``, ``--version``, ``list``,
``check``, config errors), so the whole file runs in well under a minute.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARK = re.compile(r"^<!-- runnable(?P<error>: expect-error)? -->\s*$")


@dataclass(frozen=True)
class Command:
    line: int  # 1-based line of the command in the README
    text: str
    expect_error: bool


def runnable_commands(text: str) -> list[Command]:
    """The commands of every marked ```bash block (``\\`` continuations joined, comment lines dropped)."""
    lines = text.splitlines()
    out: list[Command] = []
    for i, line in enumerate(lines):
        m = MARK.match(line)
        if not m:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if j >= len(lines) or lines[j].strip() not in ("```bash", "```sh"):
            raise AssertionError(f"README.md:{i + 1}: a runnable mark must precede a ```bash block")
        pending, start = "", 0
        for k in range(j + 1, len(lines)):
            if lines[k].strip() == "```":
                break
            body = lines[k].rstrip()
            if not pending and (not body.strip() or body.lstrip().startswith("#")):
                continue
            start = start if pending else k + 1
            if body.endswith("\\"):
                pending += body[:-1] + " "
                continue
            out.append(Command(start, (pending + body).strip(), bool(m.group("error"))))
            pending = ""
    return out


def run_command(cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def check(command: Command) -> str | None:
    """None when the command behaves as marked, else why not."""
    proc = run_command(command.text)
    where = f"README.md:{command.line}: {command.text}"
    if command.expect_error:
        err = proc.stderr.strip().splitlines()
        if proc.returncode == 0:
            return f"{where}: exited 0, expected an error"
        if len(err) != 1 or not err[0].startswith("fedsim: "):
            return f"{where}: expected one 'fedsim: ...' line on stderr, got {proc.stderr[-1500:]!r}"
        return None
    if proc.returncode != 0:
        return f"{where}: exit {proc.returncode}: {proc.stderr[-1500:]}"
    return None


COMMANDS = runnable_commands(README.read_text(encoding="utf-8"))


def test_the_readme_marks_the_quick_commands_runnable() -> None:
    texts = [c.text.split("#")[0].strip() for c in COMMANDS]
    for expected in ("fedsim --version", "fedsim --help", "fedsim list attacks"):
        assert expected in texts, expected
    assert any(t.startswith("fedsim check configs/smoke.toml") for t in texts)
    assert any(c.expect_error for c in COMMANDS) and any(not c.expect_error for c in COMMANDS)
    for c in COMMANDS:  # only quick CLI calls: a federation is never started here (config errors stop before)
        assert c.text.startswith("fedsim "), c
        assert c.expect_error or c.text.split()[1] in ("--version", "--help", "list", "check"), c


@pytest.mark.parametrize("command", COMMANDS, ids=[f"line{c.line}" for c in COMMANDS])
def test_readme_command(command: Command) -> None:
    problem = check(command)
    assert problem is None, problem


def test_a_broken_command_is_caught() -> None:
    """The harness itself: a block whose command fails (or, marked expect-error, succeeds) is reported."""
    text = ("<!-- runnable -->\n```bash\nfedsim check configs/no_such.toml\n```\n\n"
            "<!-- runnable: expect-error -->\n```bash\nfedsim --version   # exits 0\n```\n")
    broken, unexpected = runnable_commands(text)
    assert (broken.line, broken.expect_error, unexpected.expect_error) == (3, False, True)
    assert "exit 2" in (check(broken) or "")
    assert "exited 0" in (check(unexpected) or "")
