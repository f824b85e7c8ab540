"""What the attacker may read, enforced by parsing: attacks see the server's view (no client split, no audit
file), and only the evaluation layer reads ground truth. Each rule has a probe that must fail on a violation."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.import_graph import PACKAGES, ROOT, _files, _hits, _modules, _tree


#: the split helper. ``load_dataset`` / ``ImageDataset`` stay allowed: attacks take the public split (the test
#: split: ``fedsim.attacks.generative.prior.aux_split``) from them, and never touch ``train_x`` / ``train_y`` (below).
CLIENT_DATA = ("fedsim.core.data.sources", "fedsim.core.data.DATASETS", "fedsim.core.data.core.DATASETS",
               "fedsim.core.data.core.stratified_split", "fedsim.core.data.core.register")
#: attributes no attack may read: the train split of an ``ImageDataset`` (every client's data) and the audit
#: store of a ``RunFolder`` (``audit``, ``audit_file``: ground truth)
FORBIDDEN_ATTRIBUTES = ("train_x", "train_y", "audit", "audit_file")


def _attack_data_offenders(root: Path = ROOT) -> list[str]:
    offenders = []
    for p in _files("attacks", root):
        for name in sorted(_modules(p, root)):
            if _hits(name, CLIENT_DATA):
                offenders.append(f"{p.relative_to(root)} imports {name}")
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
                offenders.append(f"{p.relative_to(root)}:{node.lineno} reads .{node.attr}")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    any(part == "audit" for part in node.value.replace("\\", "/").split("/")) and "/" in node.value:
                offenders.append(f"{p.relative_to(root)}:{node.lineno} spells an audit-store path")
    return offenders


def test_attacks_see_no_client_data_and_no_audit_file():
    """Attacks see what the server sees: no client split (``fedsim.core.experiment``, ``fedsim.core.partitions`` by the floor
    rule; the ``fedsim.core.data`` loaders and a dataset's train split here) and no audit file (``fedsim.core.audit`` by the
    floor rule; ``RunFolder.audit*`` and a path under ``audit/`` here)."""
    offenders = _attack_data_offenders()
    assert not offenders, offenders


def _ground_truth_offenders(root: Path = ROOT) -> list[str]:
    readers = ("fedsim.evaluation.truth", "read_ground_truth", "truth_for", "has_ground_truth")
    offenders = []
    for package in PACKAGES:
        for p in (root / package).rglob("*.py"):
            if p.is_relative_to(root / "fedsim" / "evaluation"):
                continue
            for name in _modules(p, root):
                if any(name == r or name.endswith("." + r) or name.startswith(r + ".") for r in readers):
                    offenders.append(f"{p.relative_to(root)} imports {name}")
            if "audit_file(" in p.read_text() and p.name not in ("audit.py", "runfolder.py"):
                offenders.append(f"{p.relative_to(root)} opens an audit file")
    return offenders


def test_only_the_evaluation_layer_reads_ground_truth():
    """The audit store is written by clients (fedsim.core.audit has no reader) and read only in fedsim/evaluation."""
    audit_src = (ROOT / "fedsim" / "core" / "audit.py").read_text()
    assert "load_file" not in audit_src and "safe_open" not in audit_src
    offenders = _ground_truth_offenders()
    assert not offenders, offenders


@pytest.mark.parametrize("text", [
    "from fedsim.core.data import sources\n",
    "from fedsim.core.data.sources import load_mnist_subset\n",
    "from fedsim.core.data.core import DATASETS, stratified_split\n",
    "def f(ds):\n    return ds.train_x[:8]\n",
    "def f(folder):\n    return folder.audit_file(1, 0)\n",
    "def f(folder):\n    return folder.audit\n",
    "from safetensors.torch import load_file\nx = load_file('runs/x/audit/round_0001/client_0000.safetensors')\n",
])
def test_probe_attack_data_rule_fails_on_a_violation(tmp_path, text):
    assert _attack_data_offenders(_tree(tmp_path, {"attacks/probe.py": text}))


def test_probe_attack_data_rule_allows_the_public_split(tmp_path):
    root = _tree(tmp_path, {"attacks/probe.py": "from fedsim.core.data import ImageDataset, load_dataset\n"
                                                "def f(ds):\n    return ds.test_x[0::2]\n"})
    assert not _attack_data_offenders(root)


@pytest.mark.parametrize("where,text", [
    ("server/probe.py", "from fedsim.evaluation.truth import read_ground_truth\n"),
    ("attacks/probe.py", "from fedsim.evaluation import truth_for\n"),
    ("clients/probe.py", "def f(folder):\n    return folder.audit_file(1, 2)\n"),
])
def test_probe_ground_truth_rule_fails_on_a_violation(tmp_path, where, text):
    assert _ground_truth_offenders(_tree(tmp_path, {where: text}))
