"""The floors of docs/architecture.md and their one-way imports, enforced by parsing every module's imports.

core (fedsim/ outside evaluation/ and lab/) -> attacks/ -> fedsim/evaluation/ -> clients/, server/ -> fedsim/lab/
Each rule below names a package (or file set) and the modules it must never import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(path: Path) -> set[str]:
    """Dotted names a file imports (absolute imports; relative ones resolved against its package)."""
    tree = ast.parse(path.read_text())
    pkg = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(p for p in parts + [base] if p)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def _files(spec: str) -> list[Path]:
    if spec == "core":
        return [p for p in (ROOT / "fedsim").rglob("*.py")
                if not p.relative_to(ROOT / "fedsim").parts[0] in ("evaluation", "lab")]
    return sorted((ROOT / spec).rglob("*.py"))


def _hits(name: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f for f in forbidden if name == f or name.startswith(f + ".")]


FLOOR_RULES: dict[str, tuple[str, ...]] = {
    # floor 1: the core never sees Flower, the attacks, the apps, evaluation or the lab shell
    "core": ("flwr", "attacks", "clients", "server", "fedsim.evaluation", "fedsim.lab"),
    # floor 2: attacks are pure PyTorch and see only what the server sees: no Flower, no ground truth (audit
    # store, evaluation layer), no client data (partitions / experiment), nothing above them
    "attacks": ("flwr", "clients", "server", "fedsim.evaluation", "fedsim.lab", "fedsim.audit",
                "fedsim.experiment", "fedsim.partitions"),
    # floor 3: evaluation scores attacks; it never needs Flower or the apps
    "fedsim/evaluation": ("flwr", "clients", "server", "fedsim.lab"),
    # floor 4: the Flower shells never import each other, nor the lab shell; clients never run attacks
    "clients": ("server", "attacks", "fedsim.evaluation", "fedsim.lab"),
    "server": ("clients", "fedsim.lab"),
    # floor 5: the lab shell drives Flower as processes only
    "fedsim/lab": ("flwr", "clients", "server"),
}


@pytest.mark.parametrize("floor", sorted(FLOOR_RULES))
def test_floor_imports(floor):
    offenders = [f"{p.relative_to(ROOT)} imports {name}" for p in _files(floor) for name in sorted(_modules(p))
                 if _hits(name, FLOOR_RULES[floor])]
    assert not offenders, offenders


def test_only_the_evaluation_layer_reads_ground_truth():
    """The audit store is written by clients (fedsim.audit has no reader) and read only in fedsim/evaluation."""
    audit_src = (ROOT / "fedsim" / "audit.py").read_text()
    assert "load_file" not in audit_src and "safe_open" not in audit_src
    readers = ("fedsim.evaluation.truth", "read_ground_truth", "truth_for", "has_ground_truth")
    offenders = []
    for package in ("fedsim", "attacks", "clients", "server"):
        for p in (ROOT / package).rglob("*.py"):
            if p.is_relative_to(ROOT / "fedsim" / "evaluation"):
                continue
            for name in _modules(p):
                if any(name == r or name.endswith("." + r) or name.startswith(r + ".") for r in readers):
                    offenders.append(f"{p.relative_to(ROOT)} imports {name}")
            if "audit_file(" in p.read_text() and p.name not in ("audit.py", "runfolder.py"):
                offenders.append(f"{p.relative_to(ROOT)} opens an audit file")
    assert not offenders, offenders


def test_the_rules_catch_a_violation(tmp_path):
    """The parser sees through `from x import y` and relative imports (a rule that cannot fail is no rule)."""
    bad = ROOT / "attacks" / "_tmp_violation_probe.py"
    bad.write_text("from fedsim.evaluation.truth import read_ground_truth\nfrom ..server import app\n")
    try:
        names = _modules(bad)
        assert _hits("fedsim.evaluation.truth.read_ground_truth", FLOOR_RULES["attacks"])
        assert "fedsim.evaluation.truth" in names and "server" in names
    finally:
        bad.unlink()


def test_every_python_file_of_the_project_parses():
    """Benchmarks and scripts are not imported by the tests; a syntax error there must still fail CI."""
    bad = []
    for folder in ("fedsim", "attacks", "clients", "server", "benchmarks", "scripts", "tests"):
        for p in (ROOT / folder).rglob("*.py"):
            try:
                ast.parse(p.read_text(), filename=str(p))
            except SyntaxError as exc:
                bad.append(f"{p.relative_to(ROOT)}:{exc.lineno}: {exc.msg}")
    assert not bad, bad
