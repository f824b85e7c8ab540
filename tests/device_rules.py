"""A static device rule over the attack, metric, evaluation and report code (issue 33, "device discipline, checked on
CPU").

Two findings, from an AST walk (no import of the code checked):

* ``numpy``: ``<expr>.numpy()`` whose receiver chain has no ``.cpu()`` (``x.cpu().numpy()``,
  ``x.detach().cpu().numpy()`` pass). On a CUDA tensor ``.numpy()`` raises; ``.cpu()`` first marks the one
  deliberate host crossing.
* ``factory``: a tensor factory (``FACTORIES``) called without ``device=``, unless its result is moved at once
  (``torch.randn(..., generator=g).to(x.device)``: a seeded CPU draw, the same numbers on every device). Such a
  tensor lands on the CPU whatever device the attack runs on. ``torch.as_tensor`` / ``from_numpy`` are not
  factories here (they keep a tensor's device; a list becomes a CPU tensor, and a mismatch then fails the
  float64 / fake-CUDA tests). A ``**kwargs`` argument counts as giving the device (the ``like = dict(dtype=...,
  device=...)`` idiom).

``ALLOWED`` lists the places where a CPU tensor is right, with the reason; an entry is (path, function, factory or
``.numpy``). A stale entry (nothing left to allow) is itself a finding, so the list cannot rot.

Written for fedsim (no linter in the project's tool chain checks this: ruff / flake8 have no device rule).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCOPE = ("attacks", "fedsim/core/metrics", "fedsim/evaluation", "fedsim/lab/report")
FACTORIES = frozenset({"zeros", "ones", "empty", "full", "rand", "randn", "randint", "randperm", "arange", "eye",
                       "linspace", "tensor"})

#: (path, enclosing function, call) -> why a CPU tensor is right there
ALLOWED: dict[tuple[str, str, str], str] = {
    ("fedsim/evaluation/identify.py", "train_classifier", "torch.randperm"):
        "the public classifier trains on the CPU (images moved there first); the order indexes those CPU images",
    ("fedsim/evaluation/identify.py", "_capped", "torch.randperm"):
        "a seeded subsample of a data partition, which the data layer serves on the CPU",
    ("attacks/generative/prior.py", "train_prior", "torch.randint"):
        "batch indices drawn with the seeded CPU generator; a CPU index tensor indexes images on any device",
    ("attacks/generative/prior.py", "Encoder.__init__", "torch.zeros"):
        "a shape probe at construction, before the encoder is moved to any device",
    ("attacks/generative/invert.py", "invert_generative", "torch.tensor"):
        "a Python float loss for BestTracker, which keeps its losses on the host (core.BestTracker)",
    ("attacks/inversion/core.py", "init_variables", "torch.randn"):
        "the seeded CPU draw of the joint soft labels, moved to the problem's device on the next line",
    ("attacks/inversion/core.py", "BestTracker.__init__", "torch.full"):
        "the tracker's per-restart losses live on the host (update() moves each step's losses there)",
    ("attacks/inversion/core.py", "run_gradient_matching", "torch.tensor"):
        "the median of the host-side step timings (Python floats), a statistic for the trace, not attack data",
    **{("attacks/inversion/optim.py", f"_init_{name}", call):
       "seeded CPU draw of the starting point: init_dummy gets CPU mean/std and core.init_variables moves the "
       "result to the problem's device and dtype (the same start on every device)"
       for name, call in (("randn", "torch.randn"), ("uniform", "torch.rand"), ("normal_half", "torch.randn"),
                          ("normal_pixel", "torch.randn"), ("uniform_centered", "torch.rand"),
                          ("grey", "torch.randn"))},
    ("attacks/labels/aux.py", "calibrate_shrink", "torch.tensor"):
        "class availability weights for torch.multinomial with the seeded CPU generator (a CPU draw)",
    ("attacks/labels/aux.py", "calibrate_shrink", "torch.ones"):
        "uniform class proportions for torch.multinomial with the seeded CPU generator (a CPU draw)",
    ("attacks/semantic.py", "train_classifier", "torch.randperm"):
        "a seeded CPU order of the public split's indices (a CPU index tensor indexes images on any device)",
    ("attacks/semantic.py", "train_classifier", "torch.randint"):
        "a seeded CPU draw of two shift offsets read back as Python ints",
    ("attacks/learned/inverter.py", "train_inverter", "torch.randint"):
        "a seeded CPU draw of two shift offsets read back as Python ints",
    ("fedsim/evaluation/prior_aware.py", "membership", "torch.zeros"):
        "the oracle-prior audit (ground truth) compares on the host (the cdist below moves both sides there)",
    ("fedsim/evaluation/prior_aware.py", "oracle_prior_row", "torch.randperm"):
        "seeded CPU choice of decoy indices into the test split, which the data layer serves on the CPU",
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    function: str
    call: str
    kind: str  # "numpy" | "factory" | "stale-allow"

    def __str__(self) -> str:
        return f"{self.path}:{self.line} in {self.function}: {self.call} ({self.kind})"


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return "?"


def _chain_has_cpu(node: ast.AST) -> bool:
    """Does the receiver chain of a method call contain a ``.cpu()`` call (``a.detach().cpu().numpy()``)?"""
    while True:
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "cpu":
                return True
            node = node.func
        elif isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return False


class _Walker(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.stack: list[str] = []
        self.parents: dict[int, ast.AST] = {}
        self.found: list[Finding] = []

    def visit(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            self.parents[id(child)] = node
        super().visit(node)

    def _scoped(self, node: ast.AST) -> None:
        self.stack.append(node.name)  # type: ignore[attr-defined]
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def _moved_at_once(self, node: ast.Call) -> bool:
        parent = self.parents.get(id(node))
        if isinstance(parent, ast.Attribute) and parent.attr in ("to", "cuda"):
            grand = self.parents.get(id(parent))
            return isinstance(grand, ast.Call) and grand.func is parent
        return False

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        where = ".".join(self.stack) or "<module>"
        if isinstance(func, ast.Attribute) and func.attr == "numpy" and not node.args:
            if not _chain_has_cpu(func.value):
                self.found.append(Finding(self.path, node.lineno, where, ".numpy", "numpy"))
        name = _name(func)
        if name.startswith("torch.") and name.split(".", 1)[1] in FACTORIES:
            # device=..., or a ``**like`` dict (``like = dict(dtype=..., device=...)``, the modules' idiom)
            has_device = any(k.arg in ("device", None) for k in node.keywords)
            if not has_device and not self._moved_at_once(node):
                self.found.append(Finding(self.path, node.lineno, where, name, "factory"))
        self.generic_visit(node)


def check_source(source: str, path: str = "<probe>") -> list[Finding]:
    """Findings of one module's source (no allow-list applied)."""
    walker = _Walker(path)
    walker.visit(ast.parse(source))
    return walker.found


def check_tree(root: Path = ROOT, scope: tuple[str, ...] = SCOPE,
               allowed: dict[tuple[str, str, str], str] | None = None) -> list[Finding]:
    """Findings under ``scope`` not in ``allowed``, plus allow-list entries that no longer match anything."""
    allowed = ALLOWED if allowed is None else allowed
    found: list[Finding] = []
    used: set[tuple[str, str, str]] = set()
    for folder in scope:
        for file in sorted((root / folder).rglob("*.py")):
            rel = file.relative_to(root).as_posix()
            for f in check_source(file.read_text(encoding="utf-8"), rel):
                key = (f.path, f.function, f.call)
                if key in allowed:
                    used.add(key)
                else:
                    found.append(f)
    found += [Finding(p, 0, fn, call, "stale-allow") for (p, fn, call) in allowed
              if (p, fn, call) not in used and any(p.startswith(s) for s in scope)]
    return found
