"""Scripts outside the test suite's import path (``benchmarks/``, ``scripts/``, ``examples/``) import only names
that exist: a module moved in a refactor breaks them at their first line, where no unit test runs them
(``benchmarks/defenses.py`` imported ``fedsim.experiment`` after it had moved to ``fedsim.core.experiment``).
Checked from the syntax tree: each ``from fedsim... import name`` / ``import fedsim...`` is imported and the name
looked up; nothing in the scripts runs."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("benchmarks", "scripts", "examples")


def fedsim_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) of every absolute import of a ``fedsim`` module in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "fedsim":
            found += [(node.lineno, node.module, a.name) for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "fedsim"]
    return found


SCRIPTS = sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py") if (ROOT / folder).is_dir())


def test_the_check_finds_a_moved_module(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom fedsim import experiment as E\nfrom fedsim.core import experiment\n")
    assert fedsim_imports(bad) == [(2, "fedsim", "experiment"), (3, "fedsim.core", "experiment")]
    assert unresolved(bad) == ["bad.py:2: fedsim.experiment"]


def unresolved(path: Path) -> list[str]:
    missing = []
    for line, module, name in fedsim_imports(path):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            missing.append(f"{path.name}:{line}: {module}")
            continue
        if name is not None and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{path.name}:{line}: {module}.{name}")
    return missing


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_imports_resolve(path):
    assert unresolved(path) == []
