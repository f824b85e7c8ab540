"""fedsim as a user gets it (issue 33, "Installs like a package"): the wheel built from this checkout, installed
into a fresh virtual environment outside the checkout, run from an empty folder.

The venv gets fedsim from the wheel only. Its dependencies (torch, Flower, ...) are not downloaded again: a ``.pth``
file adds this environment's site-packages *after* the venv's own, so ``import torch`` works; the directory a
``.pth`` line adds is not a site directory, so the editable install's finder there is never loaded and the venv's
``fedsim`` is the wheel's (checked). Flower's console scripts (``flwr``, ``flower-superlink``, ...) are written into
the venv's ``bin/`` from Flower's entry points, as pip would, so that every Flower process runs the venv's Python.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import time
from importlib.metadata import distribution
from pathlib import Path

import pytest

from fedsim.core.rows import AttackErrorRow, LabelRow
from fedsim.core.runfolder import RunFolder
from tests.processes import processes_under

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _venv_with_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the checkout, make a venv, install the wheel (no dependencies), then make
    this environment's packages visible to it; returns the venv's ``bin``."""
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ there
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".*", "runs", "build", "*.egg-info", "__pycache__",
                                                             "docs", "tests", "benchmarks", "examples"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("fedsim-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    out = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                          "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # after the wheel is installed: pip never sees (nor touches) this environment's fedsim
    (Path(purelib) / "zz_fedsim_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    for ep in distribution("flwr").entry_points:
        if ep.group == "console_scripts":
            module, _, attr = ep.value.partition(":")
            script = venv / "bin" / ep.name
            script.write_text(f"#!{python}\nimport sys\nfrom {module} import {attr.split('.')[0]}\n"
                              f"if __name__ == '__main__':\n    sys.exit({attr}())\n")  # as pip's (spawn re-imports)
            script.chmod(0o755)
    return venv / "bin"


def test_the_wheel_in_a_fresh_venv_runs_a_preset_from_an_empty_folder(tmp_path):
    started = time.monotonic()
    bindir = _venv_with_wheel(tmp_path)
    built = time.monotonic() - started
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FEDSIM_ROOT", "VIRTUAL_ENV")}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"

    def fedsim(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(bindir / "fedsim"), *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=timeout)

    where = subprocess.run([str(bindir / "python"), "-c", "import fedsim, fedsim.server.app as a, fedsim.presets as p;"
                            "print(fedsim.__file__); print(a.__file__); print(p.__file__); "
                            "import importlib.util as u; print(u.find_spec('fedsim.fedsim'))"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    files = where.stdout.splitlines()
    assert all(Path(f).is_relative_to(tmp_path / "venv") for f in files[:3]), files  # the wheel, not the checkout
    assert files[3] == "None"

    listed = fedsim("list", "presets")
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert names == sorted(p.stem for p in (tmp_path / "src" / "configs").glob("*.toml"))  # the wheel's source

    checked = fedsim("check", "demo")
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert checked.stdout.startswith("valid: demo can run (preflight ok)") and \
        "# code: this config names no module of its own" in checked.stdout

    ran_at = time.monotonic()
    run = fedsim("run", "smoke", "--quiet", "--set", "run.num_rounds=1", "--set", "data.max_examples_per_client=16",
                 "--set", "attack.label_methods=ilrg", "--set", "attack.inversion_steps=2",
                 "--set", "attack.max_inversion_images=4", timeout=400)
    ran = time.monotonic() - ran_at
    deadline = time.monotonic() + 30
    while (leftover := processes_under(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    folder = RunFolder(work / "runs" / "smoke")  # the current folder's runs/
    assert folder.done.is_file() and folder.report.is_file() and str(folder.report) in run.stdout
    assert [r.round for r in folder.rows() if getattr(r, "test_accuracy", None) is not None] == [0, 1]
    assert len(list(folder.iter_captures())) == 3
    labels = folder.rows(LabelRow)  # the attack workers (spawned by the venv's ServerApp) ran and scored
    assert [(r.method, r.ok, r.score_error) for r in labels] == [("ilrg", True, None)] * 3
    assert folder.rows(AttackErrorRow) == []
    assert sorted(p.name for p in work.iterdir()) == ["runs"]  # nothing else written into the user's folder
    assert leftover == []
    print(f"wheel build + venv + install {built:.0f} s; fedsim run smoke (1 round) {ran:.0f} s")
