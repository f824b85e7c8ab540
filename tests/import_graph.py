"""Reading a project's imports by parsing its modules (no import is executed): the helpers of the architecture
rules (tests/test_architecture.py) and the data-boundary rules (tests/test_data_boundaries.py), and ``_tree``, the
throwaway project their probes build."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


DYNAMIC_IMPORTS = ("import_module", "__import__")  # importlib.import_module("x"), __import__("x")


#: top-level folder -> the import name it installs as (pyproject.toml ``[tool.setuptools] package-dir``)
INSTALLED_AS = {"fedsim": "fedsim", "attacks": "fedsim.attacks", "clients": "fedsim.clients",
                "server": "fedsim.server", "configs": "fedsim.presets"}  # configs/: the presets, package data
SHELL_FOLDERS = ("attacks", "clients", "server")


def _dotted(path: Path, root: Path) -> list[str]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return INSTALLED_AS.get(parts[0], parts[0]).split(".") + parts[1:]


def _package(path: Path, root: Path = ROOT) -> str:
    """The package a file's relative imports resolve against (a package's own name for its ``__init__``)."""
    return ".".join(_dotted(path, root)[:-1])


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = _dotted(path, root)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, path: Path, root: Path) -> str:
    base = node.module or ""
    if node.level:
        pkg = _package(path, root).split(".")
        base = ".".join(p for p in pkg[: len(pkg) - node.level + 1] + [base] if p)
    return base


def _dynamic(node: ast.AST) -> str | None:
    """The string literal of ``importlib.import_module("x")`` / ``__import__("x")`` (None otherwise)."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    arg = node.args[0]
    if name in DYNAMIC_IMPORTS and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    return None


def _imports(path: Path, root: Path = ROOT) -> list[tuple[str, list[str]]]:
    """Every import of a file, module level or inside a function, as (module, imported names).

    Statements (absolute, relative resolved against its package) and ``importlib`` / ``__import__`` string
    literals. Imports under ``if TYPE_CHECKING:`` are left out (they never run)."""
    out: list[tuple[str, list[str]]] = []

    def visit(nodes) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                out.extend((a.name, []) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                out.append((_resolve(node, path, root), [a.name for a in node.names]))
            elif (literal := _dynamic(node)) is not None:
                out.append((literal, []))
            visit(ast.iter_child_nodes(node))

    visit(ast.parse(path.read_text()).body)
    return out


def _modules(path: Path, root: Path = ROOT) -> set[str]:
    """Dotted names a file imports: each module, and ``module.name`` for each ``from module import name``."""
    names: set[str] = set()
    for module, imported in _imports(path, root):
        names.add(module)
        names.update(f"{module}.{n}" for n in imported)
    return names


def _files(spec: str, root: Path = ROOT) -> list[Path]:
    if spec.endswith(".py"):  # a floor of one module (fedsim/api.py)
        return [root / spec] if (root / spec).is_file() else []
    return sorted((root / spec).rglob("*.py"))


def _hits(name: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f for f in forbidden if name == f or name.startswith(f + ".")]


PACKAGES = tuple(INSTALLED_AS)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A throwaway project under tmp_path: the given files plus an empty ``__init__.py`` in each package."""
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        for parent in path.relative_to(tmp_path).parents:
            if parent != Path(".") and not (tmp_path / parent / "__init__.py").exists():
                (tmp_path / parent / "__init__.py").write_text("")
    return tmp_path
