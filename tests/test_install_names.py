"""The shells install inside ``fedsim`` (pyproject ``package-dir``): a user's own ``attacks`` / ``server`` /
``clients`` packages do not collide with ours, and a wheel holds only the ``fedsim`` import name."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_users_own_attacks_and_server_packages_do_not_collide(tmp_path):
    for name in ("attacks", "server", "clients"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"OWNER = 'user-{name}'\n")
    code = ("import attacks, server, clients, fedsim.attacks.labels as L, fedsim.server.strategy as S\n"
            "print(attacks.OWNER, server.OWNER, clients.OWNER, 'ilrg' in L.LABEL_METHODS, S.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["user-attacks", "user-server", "user-clients", "True", "fedsim.server.strategy"]


def test_only_an_install_maps_the_names(tmp_path):
    """The names come from the install's mapping (a wheel, or the editable finder onto the checkout), and from
    nothing else: with the checkout on ``sys.path`` but no install (site-packages without its ``.pth`` files, so
    the editable finder is not loaded), ``fedsim`` is its own folder and ``fedsim.server`` / ``fedsim.fedsim`` do
    not exist (no ``__path__`` extension: one copy of every module); with the install, ``fedsim.server.app`` is
    ``server/app.py`` and no bare ``attacks`` / ``server`` module is loaded."""
    import site

    bare = ("import sys, importlib.util as u\n"
            f"sys.path[:0] = [{str(ROOT)!r}]; sys.path += {site.getsitepackages()!r}\n"
            "import fedsim\nprint(fedsim.__path__, u.find_spec('fedsim.server'), u.find_spec('fedsim.fedsim'))\n")
    out = subprocess.run([sys.executable, "-S", "-c", bare], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [f"[{str(ROOT / 'fedsim')!r}]", "None", "None"]
    code = ("import sys, fedsim.server.app as A, fedsim.attacks.records as R\n"
            "print(A.__file__); print(R.__file__)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('attacks', 'clients', 'server')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    app, records, loaded = out.stdout.splitlines()
    assert Path(app) == ROOT / "server" / "app.py" and Path(records) == ROOT / "attacks" / "records.py"
    assert loaded == "[]"


@pytest.mark.slow
def test_the_wheel_holds_one_import_name(tmp_path):
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ there
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".*", "runs", "build", "*.egg-info", "__pycache__",
                                                             "docs", "tests", "benchmarks", "examples"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("fedsim-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"fedsim"}, tops
    for module in ("fedsim/attacks/labels/ilrg.py", "fedsim/server/app.py", "fedsim/clients/app.py",
                   "fedsim/core/config.py", "fedsim/lab/cli.py", "fedsim/core/paths.py"):
        assert module in names, module
    presets = sorted(n.rpartition("/")[2] for n in names if n.startswith("fedsim/presets/") and n.endswith(".toml"))
    assert presets == sorted(p.name for p in (ROOT / "configs").glob("*.toml"))  # every preset is package data
