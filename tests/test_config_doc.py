"""docs/config.md is generated from the schema and the registries, and stays equal to them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fedsim.core.config import ExperimentConfig
from fedsim.core.defense.registry import DefenseSection
from fedsim.lab import config_doc

ROOT = Path(__file__).resolve().parents[1]


def test_every_schema_field_has_a_doc() -> None:
    rows = config_doc.key_rows()  # raises MissingDoc naming the fields without one
    assert all(doc for *_, doc in rows)


def test_the_table_holds_every_key_with_type_default_and_bounds() -> None:
    text = config_doc.render()
    builtin = {k for k in ExperimentConfig(defense=DefenseSection()).to_flat()}
    for key in builtin:
        assert f"| `{key}` |" in text, key
    assert "| `train.lr` | float | `0.05` | >= 1e-12 |" in text
    assert "| `data.partition` | str | `\"dirichlet\"` | `iid`, `dirichlet`, `shards` |" in text
    assert "| `defense.update.quant_bits` | int | `0` | 0 .. 16 |" in text
    assert "## `[defense.dp_sgd]`" in text


def test_the_attack_methods_are_listed_with_their_papers() -> None:
    from fedsim.lab.catalog import entries

    text = config_doc.render()
    for e in entries("attacks"):
        assert f"| `{e.name}` | {config_doc._cell(e.paper)} |" in text, e.name


def test_committed_docs_config_md_equals_the_schema() -> None:
    """A fresh interpreter (no method or defense a test registered): `scripts/config_table.py --check`."""
    proc = subprocess.run([sys.executable, "scripts/config_table.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + "\n(regenerate: python scripts/config_table.py)"
