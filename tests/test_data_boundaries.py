"""What the attacker may read, enforced by parsing: attacks see the server's view (no client split, no audit
file), and only the evaluation layer reads ground truth. Each rule has a probe that must fail on a violation."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from tests.import_graph import PACKAGES, ROOT, _files, _hits, _modules, _resolve, _tree


#: the split helper. ``load_dataset`` / ``ImageDataset`` stay allowed: attacks take the public split (the test
#: split: ``fedsim.attacks.generative.prior.aux_split``) from them, and never touch ``train_x`` / ``train_y`` (below).
CLIENT_DATA = ("fedsim.core.data.sources", "fedsim.core.data.DATASETS", "fedsim.core.data.core.DATASETS",
               "fedsim.core.data.core.stratified_split", "fedsim.core.data.core.register")
#: floor 2 of tests/test_architecture.py (no audit store, no client split, no evaluation layer), checked here also
#: where a module is reached as an attribute of an imported package (``from fedsim import core; core.experiment``)
ATTACK_FLOOR = ("fedsim.core.audit", "fedsim.core.experiment", "fedsim.core.partitions", "fedsim.evaluation")
#: attributes no attack may read: the train split of an ``ImageDataset`` (every client's data) and the audit
#: store of a ``RunFolder`` (``audit``, ``audit_file``: ground truth)
FORBIDDEN_ATTRIBUTES = ("train_x", "train_y", "audit", "audit_file")
#: reads that reach every attribute of an object at once (``vars(ds)["train_x"]``, ``ds.__dict__``)
REFLECTION = ("__dict__", "__getattribute__", "vars", "attrgetter")
#: lookups by a name computed at run time (``getattr(ds, name)``, ``importlib.import_module(name)``), which no
#: parser can check: attacks make none, except in this function (file, function), checked another way:
#: ``_import`` the user's plugin modules (their methods register in the registries, which the runtime trap
#: iterates: tests/test_attack_pipeline.py). (``attacks/inversion/methods.py``'s ``_lazy`` import by a variable
#: string is gone, issue 34: the methods built on others register their own records.)
DYNAMIC_LOOKUPS = ("getattr", "hasattr", "setattr", "delattr", "import_module", "__import__")
ALLOWED_DYNAMIC = {("attacks/plugins.py", "_import")}
LAZY_IMPORTERS = ("_lazy",)  # _lazy("module", "attr") (a probe): checked as an import of module.attr


def _static_str(node: ast.AST) -> str | None:
    """The string an expression always has when it is built from literals only (``'train_' + 'x'``,
    ``f"{'aud'}it"``, ``"/".join(("runs", "audit"))``), else None."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _static_str(node.left), _static_str(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.FormattedValue):
        return _static_str(node.value) if node.format_spec is None and node.conversion == -1 else None
    if isinstance(node, ast.JoinedStr):
        parts = [_static_str(v) for v in node.values]
        return "".join(parts) if all(p is not None for p in parts) else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join" and \
            len(node.args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple)):
        sep, items = _static_str(node.func.value), [_static_str(e) for e in node.args[0].elts]
        return sep.join(items) if sep is not None and all(i is not None for i in items) else None
    return None


def _literal_runs(node: ast.AST) -> list[str]:
    """The longest stretches of literal text a string expression is built of: ``run + '/aud' + 'it/x'`` ->
    ``['/audit/x']`` (the name between them is unknown), a literal-only expression -> its value."""
    def operands(n: ast.AST) -> list[ast.AST]:
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add):
            return operands(n.left) + operands(n.right)
        if isinstance(n, ast.JoinedStr):
            return [v for part in n.values for v in operands(part)]
        return [n]

    runs, current = [], None
    for op in operands(node):
        text = _static_str(op)
        if text is None:
            runs, current = runs + ([current] if current is not None else []), None
        else:
            current = (current or "") + text
    return runs + ([current] if current is not None else [])


def _audit_path(text: str) -> bool:
    """A path with a part named ``audit`` (``"audit"``, ``"runs/x/audit/round_0001"``)."""
    return any(part.strip() == "audit" for part in text.replace("\\", "/").split("/"))


@functools.lru_cache(maxsize=None)
def _parse(path: Path, mtime_ns: int) -> tuple[ast.Module, list[ast.AST]]:
    tree = ast.parse(path.read_text())
    return tree, list(ast.walk(tree))


def _tree_of(path: Path) -> ast.Module:
    """The parsed file (parsed once per version of the file in a test session: every rule walks it)."""
    return _parse(path, path.stat().st_mtime_ns)[0]


def _nodes(path: Path) -> list[ast.AST]:
    """Every node of the parsed file (``ast.walk``, once per version of the file)."""
    return _parse(path, path.stat().st_mtime_ns)[1]


def _aliases(path: Path, root: Path) -> dict[str, str]:
    """Local name -> the module or object it is bound to by an import (``import a.b`` binds ``a``; ``import a.b
    as x`` binds ``x`` to ``a.b``; ``from a import b as c`` binds ``c`` to ``a.b``), at any depth of the file."""
    out: dict[str, str] = {}
    for node in _nodes(path):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, path, root)
            for a in node.names:
                if a.name != "*":
                    out[a.asname or a.name] = f"{base}.{a.name}" if base else a.name
    return out


def _chain(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The dotted name an expression reaches from an imported name (``data.sources.load_mnist_subset`` after
    ``from fedsim.core import data``; ``getattr(data, "sources")`` too), else None."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _chain(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" and \
            len(node.args) >= 2 and (attr := _static_str(node.args[1])) is not None:
        base = _chain(node.args[0], aliases)
        return f"{base}.{attr}" if base else None
    return None


def _references(path: Path, root: Path = ROOT) -> set[str]:
    """Every dotted name a file reaches: its imports (``_modules``), the attribute chains of imported names
    (``_chain``) and the literal ``module.attr`` of each lazy-import call (``LAZY_IMPORTERS``)."""
    return _references_of(path, root, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _references_of(path: Path, root: Path, mtime_ns: int) -> frozenset[str]:
    aliases = _aliases(path, root)
    names = set(_modules(path, root))
    for node in _nodes(path):
        if isinstance(node, (ast.Attribute, ast.Call)) and (name := _chain(node, aliases)) is not None:
            names.add(name)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in LAZY_IMPORTERS and \
                len(node.args) == 2 and None not in (mod := _static_str(node.args[0]), attr := _static_str(node.args[1])):
            names.update({mod, f"{mod}.{attr}"})
    return frozenset(names)


def _functions(tree: ast.AST):
    """(node, names of the functions it is defined in, outermost first) for every node of ``tree``."""
    def visit(node, functions):
        for child in ast.iter_child_nodes(node):
            yield child, functions
            inner = (*functions, child.name) if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                else functions
            yield from visit(child, inner)
    yield from visit(tree, ())


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _store_offenders(p: Path, root: Path, tree: ast.AST) -> list[str]:
    """The audit store and the train split, by attribute, by a literal spelling of either, by reflection, or by a
    lookup whose name is computed at run time."""
    rel = p.relative_to(root).as_posix()
    out = []
    for node, functions in _functions(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES + REFLECTION:
            out.append(f"{where} reads .{node.attr}")
        texts = _literal_runs(node) if isinstance(node, (ast.Constant, ast.BinOp, ast.JoinedStr)) else \
            [t] if isinstance(node, ast.Call) and (t := _static_str(node)) is not None else []
        for text in texts:
            if _audit_path(text):
                out.append(f"{where} spells an audit-store path {text!r}")
            if text in FORBIDDEN_ATTRIBUTES + REFLECTION[:2]:
                out.append(f"{where} spells the attribute {text!r}")
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name in REFLECTION[2:]:
                out.append(f"{where} calls {name}()")
            if name in DYNAMIC_LOOKUPS and not any((rel, f) in ALLOWED_DYNAMIC for f in functions):
                arg = node.args[1] if name.endswith("attr") and len(node.args) > 1 else \
                    node.args[0] if node.args else None
                if arg is None or _static_str(arg) is None:
                    out.append(f"{where} calls {name}() with a name computed at run time")
    return out


#: the folders of the curious server's view: the attacks and the ServerApp (neither reads the audit store or a
#: client's train split; the server scores through the evaluation layer, which may)
SERVER_VIEW = ("attacks", "server")


def _attack_data_offenders(root: Path = ROOT) -> list[str]:
    offenders = []
    for p in _files("attacks", root):
        for name in sorted(_references(p, root)):
            if _hits(name, CLIENT_DATA + ATTACK_FLOOR):
                offenders.append(f"{p.relative_to(root)} reaches {name}")
    for folder in SERVER_VIEW:
        for p in _files(folder, root):
            offenders += _store_offenders(p, root, _tree_of(p))
    return offenders


def test_attacks_see_no_client_data_and_no_audit_file():
    """Attacks see what the server sees: no client split (``fedsim.core.experiment``, ``fedsim.core.partitions`` by the floor
    rule, here also as attributes of an imported package; the ``fedsim.core.data`` loaders and a dataset's train split
    here) and no audit file (``fedsim.core.audit`` by the floor rule; ``RunFolder.audit*`` and a path under ``audit/``
    here, in the ServerApp too), spelled out, built from literals or reached by reflection; and no lookup by a name
    computed at run time, which no parser can check (the runtime trap of tests/test_attack_pipeline.py covers what
    runs)."""
    offenders = _attack_data_offenders()
    assert not offenders, offenders


def _ground_truth_offenders(root: Path = ROOT) -> list[str]:
    readers = ("fedsim.evaluation.truth", "read_ground_truth", "truth_for", "has_ground_truth")
    offenders = []
    for package in PACKAGES:
        for p in (root / package).rglob("*.py"):
            if p.is_relative_to(root / "fedsim" / "evaluation"):
                continue
            for name in _references(p, root):
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


#: issue 35 defect 8: each passed every rule before (``PROBES_BEFORE``: the rules of commit f0fe980 flagged none)
NEW_PROBES = [
    # (a) a string path into audit/
    "from pathlib import Path\ndef f(run):\n    return (Path(run) / 'audit').rglob('*.safetensors')\n",
    "import os\ndef f(run):\n    return open(os.path.join(run, 'audit', 'round_0001', 'client_0000.safetensors'), 'rb')\n",
    "def f(run):\n    return open(run + '/aud' + 'it/round_0001/client_0000.safetensors', 'rb')\n",
    "def f(folder):\n    return getattr(folder, 'audit_file')(1, 0)\n",
    # (b) the train split by a computed attribute name or by reflection
    "from fedsim.core.data import load_dataset\nx = getattr(load_dataset('digits'), 'train_' + 'x')\n",
    "from fedsim.core.data import load_dataset\ndef f(name):\n    return getattr(load_dataset('digits'), name)\n",
    "from fedsim.core.data import load_dataset\nx = vars(load_dataset('digits'))['train_x']\n",
    "from fedsim.core.data import load_dataset\nx = load_dataset('digits').__dict__\n",
    # (c) a forbidden module reached as an attribute of an allowed package
    "from fedsim.core import data\nds = data.sources.load_mnist_subset()\n",
    "import fedsim.core.data as d\nds = getattr(d, 'sources').load_mnist_subset()\n",
    "import fedsim\nx = fedsim.core.experiment.client_data\n",
    "from fedsim import core\nx = core.data.DATASETS['digits']()\n",
    "import importlib\ndef f(m):\n    return importlib.import_module(m)\n",
    "def _lazy(module, attr):\n    pass\nrun = _lazy('fedsim.core.data.sources', 'load_mnist_subset')\n",
]
PROBES_BEFORE = 0  # of NEW_PROBES flagged by the old rules (checked with `git show f0fe980:tests/test_data_boundaries.py`)


@pytest.mark.parametrize("text", NEW_PROBES)
def test_probe_attack_data_rule_catches_issue_35_probes(tmp_path, text):
    assert _attack_data_offenders(_tree(tmp_path, {"attacks/probe.py": text}))


@pytest.mark.parametrize("where", SERVER_VIEW)
def test_probe_the_server_spells_no_audit_path_either(tmp_path, where):
    text = "from pathlib import Path\ndef f(run):\n    return Path(run) / 'audit'\n"
    assert _attack_data_offenders(_tree(tmp_path, {f"{where}/probe.py": text}))


@pytest.mark.parametrize("text", [
    "from fedsim.core.data import ImageDataset, load_dataset\ndef f(ds):\n    return ds.test_x[0::2]\n",
    "from fedsim.core import data\nx = data.load_dataset('digits').test_x\n",  # the sanctioned API, by its package
    "def f(trace):\n    return getattr(trace, 'options', {})\n",  # a literal attribute name
    "msg = 'no audit file is read'\nkey = 'train_loss'\n",  # words, no path
])
def test_probe_attack_data_rule_allows_the_public_split(tmp_path, text):
    root = _tree(tmp_path, {"attacks/probe.py": text})
    assert not _attack_data_offenders(root)


@pytest.mark.parametrize("where,text", [
    ("server/probe.py", "from fedsim.evaluation.truth import read_ground_truth\n"),
    ("attacks/probe.py", "from fedsim.evaluation import truth_for\n"),
    ("clients/probe.py", "def f(folder):\n    return folder.audit_file(1, 2)\n"),
    ("server/probe.py", "from fedsim import evaluation\ndef f(run, u):\n    return evaluation.truth.truth_for(run, u)\n"),
])
def test_probe_ground_truth_rule_fails_on_a_violation(tmp_path, where, text):
    assert _ground_truth_offenders(_tree(tmp_path, {where: text}))
