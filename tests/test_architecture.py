"""The floors of docs/architecture.md and their one-way imports, enforced by parsing every module's imports.

fedsim.core (fedsim/core/) -> fedsim.attacks (attacks/) -> fedsim.evaluation (fedsim/evaluation/)
-> fedsim.clients, fedsim.server (clients/, server/) -> fedsim.lab (fedsim/lab/), fedsim.api (fedsim/api.py)
Each rule below names a folder (or file) and the modules it must never import. The folders attacks/, clients/,
server/ are installed as fedsim.attacks, ... (pyproject ``package-dir``): a module's name comes from INSTALLED_AS.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.import_graph import (  # noqa: F401  (the rules' parsing helpers)
    DYNAMIC_IMPORTS, INSTALLED_AS, PACKAGES, ROOT, SHELL_FOLDERS, _dotted, _dynamic, _files, _hits, _imports,
    _module_name, _modules, _package, _resolve, _tree)


ABOVE_CORE = ("fedsim.attacks", "fedsim.evaluation", "fedsim.clients", "fedsim.server", "fedsim.lab", "fedsim.api")
FLOOR_RULES: dict[str, tuple[str, ...]] = {
    # floor 1: the core never sees Flower, the attacks, the apps, evaluation, the lab shell or the API
    "fedsim/core": ("flwr", *ABOVE_CORE),
    # floor 2: attacks are pure PyTorch and see only what the server sees: no Flower, no ground truth (audit
    # store, evaluation layer), no client data (partitions / experiment), nothing above them
    "attacks": ("flwr", *ABOVE_CORE[1:], "fedsim.core.audit", "fedsim.core.experiment", "fedsim.core.partitions"),
    # floor 3: evaluation scores attacks; it never needs Flower or the apps
    "fedsim/evaluation": ("flwr", *ABOVE_CORE[2:]),
    # floor 4: the Flower shells never import each other, nor the lab shell; clients never run attacks
    "clients": ("fedsim.server", "fedsim.attacks", "fedsim.evaluation", "fedsim.lab", "fedsim.api"),
    "server": ("fedsim.clients", "fedsim.lab", "fedsim.api"),
    # floor 5: the lab shell drives Flower as processes only
    "fedsim/lab": ("flwr", "fedsim.clients", "fedsim.server"),  # its CLI is a thin layer over fedsim.api
    # floor 5 too: the Python API is the lab shell's public face (fedsim/__init__ re-exports it lazily)
    "fedsim/api.py": ("flwr", "fedsim.clients", "fedsim.server"),
}


def _floor_offenders(floor: str, root: Path = ROOT) -> list[str]:
    return [f"{p.relative_to(root)} imports {name}" for p in _files(floor, root) for name in sorted(_modules(p, root))
            if _hits(name, FLOOR_RULES[floor])]


@pytest.mark.parametrize("floor", sorted(FLOOR_RULES))
def test_floor_imports(floor):
    offenders = _floor_offenders(floor)
    assert not offenders, offenders


def _module_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names] + \
        [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)]


def test_the_package_init_imports_no_floor_at_load():
    """``fedsim/__init__`` names the API lazily; a module-level import there would tie every floor to the lab."""
    assert not [m for m in _module_level_imports(ROOT / "fedsim" / "__init__.py") if m.startswith("fedsim")]


SOURCE_FOLDERS = ("fedsim", "attacks", "clients", "server", "benchmarks", "scripts", "tests", "examples")


def _bare_shell_imports(root: Path = ROOT, folders: tuple[str, ...] = SOURCE_FOLDERS) -> list[str]:
    """Imports of ``attacks`` / ``clients`` / ``server`` by their folder names: run from the checkout they would
    load a second copy of those modules (two registries), installed they would not resolve at all."""
    out = []
    for folder in folders:
        for p in (root / folder).rglob("*.py"):
            for name in _modules(p, root):
                if name.split(".")[0] in SHELL_FOLDERS:
                    out.append(f"{p.relative_to(root)} imports {name}")
    return out


def test_the_shells_are_imported_by_their_installed_name():
    offenders = _bare_shell_imports()
    assert not offenders, offenders


def test_probe_bare_shell_import_rule(tmp_path):
    assert _bare_shell_imports(_tree(tmp_path, {"tests/probe.py": "from server.app import app\n"}))
    assert not _bare_shell_imports(_tree(tmp_path / "ok", {"tests/probe.py": "from fedsim.server.app import app\n"}))


def test_pyproject_packages_are_the_folders():
    """``[tool.setuptools] packages`` lists every package folder under its installed name (a new sub-package
    left out of the list would be missing from a wheel but present in the checkout)."""
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setup["package-dir"] == {name: folder for folder, name in INSTALLED_AS.items()}
    folders = {_module_name(init) for top in INSTALLED_AS for init in (ROOT / top).rglob("__init__.py")}
    assert set(setup["packages"]) == folders
    apps = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["components"]
    assert apps == {"serverapp": "fedsim.server.app:app", "clientapp": "fedsim.clients.app:app"}


def _import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Project module -> the project modules it imports (``from a import b`` is an arrow to ``a.b`` when that is
    a module, else to the package ``a``). A module's parent packages are not arrows (Python runs them first)."""
    files = {_module_name(p, root): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        for module, imported in _imports(path, root):
            targets = [f"{module}.{n}" if f"{module}.{n}" in files else module for n in imported] or [module]
            graph[mod].update(t for t in targets if t in files and t != mod)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circles():
    """No two project modules import each other, directly or round a longer loop.

    Function-level (deferred) imports count: deferring an import is how a circle is hidden, not broken; the two
    modules still cannot be understood, tested or moved apart, and a later module-level import turns the loop
    into a partially-initialised-module error. Imports under ``if TYPE_CHECKING:`` do not count (they never run).
    Circles across floors are also floor-rule violations; this test sees the ones inside a floor."""
    circles = _circles(_import_graph())
    assert not circles, circles


#: ``fedsim.core.data`` names that hold or return the pool every client's partition is cut from (the train split):
#: the loaders (``sources``: each returns the whole dataset, not through ``load_dataset``), their registry and
# --- probes: each rule fails on a violating module (a rule that cannot fail is no rule) ---------------------------

@pytest.mark.parametrize("floor,text", [
    ("fedsim/core", "import flwr\n"),
    ("fedsim/core", "from fedsim.attacks.labels import LABEL_METHODS\n"),
    ("fedsim/core", "from ..lab import cli\n"),  # relative, resolved against fedsim.core
    ("attacks", "from fedsim.evaluation.truth import read_ground_truth\n"),
    ("attacks", "from ..server import app\n"),  # relative, resolved against attacks/
    ("attacks", "from fedsim.core import partitions\n"),
    ("attacks", "def f():\n    from fedsim.core.experiment import client_data\n"),  # function-level counts
    ("attacks", "import importlib\nm = importlib.import_module('fedsim.core.audit')\n"),
    ("attacks", "m = __import__('fedsim.lab.cli')\n"),
    ("fedsim/evaluation", "from flwr.app import Message\n"),
    ("clients", "from fedsim.attacks.pipeline import AttackPlan\n"),
    ("server", "import fedsim.clients.app\n"),
    ("fedsim/lab", "from fedsim.server.app import app\n"),
])
def test_probe_floor_rule_fails_on_a_violation(tmp_path, floor, text):
    where = floor if floor.endswith(".py") else f"{floor}/probe.py"
    root = _tree(tmp_path, {where: text})
    assert _floor_offenders(floor, root), f"{floor} rule missed {text!r}"
    assert not _floor_offenders(floor, _tree(tmp_path / "clean", {where: "import math\n"}))


@pytest.mark.parametrize("files", [
    {"fedsim/a.py": "from fedsim import b\n", "fedsim/b.py": "import fedsim.a\n"},
    {"fedsim/a.py": "from fedsim.b import x\n", "fedsim/b.py": "from fedsim.c import y\n",
     "fedsim/c.py": "def f():\n    from fedsim.a import z\n"},  # a loop of three, one deferred import
    {"attacks/labels/x.py": "from .y import f\n", "attacks/labels/y.py": "from . import x\n"},
    {"fedsim/a.py": "import importlib\nimportlib.import_module('fedsim.b')\n", "fedsim/b.py": "import fedsim.a\n"},
])
def test_probe_circle_rule_fails_on_a_circle(tmp_path, files):
    assert _circles(_import_graph(_tree(tmp_path, files)))


def test_probe_circle_rule_passes_a_chain_and_type_checking(tmp_path):
    root = _tree(tmp_path, {"fedsim/a.py": "from fedsim import b\n", "fedsim/b.py": "import fedsim.c\n",
                            "fedsim/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                           "    from fedsim.a import A\n"})
    assert _import_graph(root)["fedsim.a"] == {"fedsim.b"} and not _circles(_import_graph(root))


def test_every_python_file_of_the_project_parses():
    """Benchmarks and scripts are not imported by the tests; a syntax error there must still fail CI."""
    bad = []
    for folder in SOURCE_FOLDERS:
        for p in (ROOT / folder).rglob("*.py"):
            try:
                ast.parse(p.read_text(), filename=str(p))
            except SyntaxError as exc:
                bad.append(f"{p.relative_to(ROOT)}:{exc.lineno}: {exc.msg}")
    assert not bad, bad
