"""Refuse a run whose attack rows are not fully scored: the check ``benchmarks/gpu_check.sh`` applies to its live
CUDA federation (issue 33), usable on any run folder.

    .venv/bin/python -m benchmarks.check_run_rows RUN_DIR [--no-identifiability]

Exit 0 when the run has at least one inversion row and every inversion row is ``ok`` with PSNR, SSIM and
identifiability (``ident_class_acc``, ``ident_reid_acc``), and no row carries a ``score_error`` or is an
``attack_error``; else exit 1 naming each offending row (round, client, method, what is wrong). A federation whose
scoring failed still exits 0 (the worker turns the exception into a ``score_error`` field), so an exit code alone
cannot tell a scored run from a broken one: this reads the rows.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable

from benchmarks import harness as h
from fedsim.core.rows import AttackErrorRow, AttackRow, InversionRow, Row
from fedsim.core.runfolder import RunFolder

SCORES = ("psnr", "ssim")
IDENTIFIABILITY = ("ident_class_acc", "ident_reid_acc")


def _where(row: Row) -> str:
    return (f"{row.KIND} row round {getattr(row, 'round', '?')} client {getattr(row, 'client', '?')}"
            f"{' method ' + row.method if isinstance(row, AttackRow) else ''}")


def offending_rows(rows: Iterable[Row], identifiability: bool = True) -> list[str]:
    """One line per row that breaks the rule (see the module docstring); empty when the run passes."""
    rows = list(rows)
    problems: list[str] = []
    required = SCORES + (IDENTIFIABILITY if identifiability else ())
    for row in rows:
        if isinstance(row, AttackErrorRow):
            problems.append(f"{_where(row)}: attack crashed: {row.error}")
            continue
        if isinstance(row, AttackRow) and row.score_error:
            problems.append(f"{_where(row)}: score_error: {row.score_error}")
        if isinstance(row, InversionRow):
            if not row.ok:
                problems.append(f"{_where(row)}: attack failed: {row.error}")
                continue
            missing = [name for name in required if getattr(row, name) is None]
            if missing:
                problems.append(f"{_where(row)}: missing {', '.join(missing)}")
    if not any(isinstance(r, InversionRow) for r in rows):
        problems.append("no inversion row at all (was attack.inversion set, and did the attack run?)")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = h.parser(__doc__)
    p.add_argument("run_dir")
    p.add_argument("--no-identifiability", action="store_true", help="require PSNR and SSIM only")
    args = h.parse(p, argv)
    folder = RunFolder(Path(args.run_dir))
    if not folder.metrics.is_file():
        print(f"check_run_rows: {folder.metrics} does not exist", file=sys.stderr)
        return 1
    rows = folder.rows()
    problems = offending_rows(rows, identifiability=not args.no_identifiability)
    inversions = sum(isinstance(r, InversionRow) for r in rows)
    if problems:
        print(f"check_run_rows: {len(problems)} problem(s) in {args.run_dir}:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"check_run_rows: {inversions} inversion row(s), all scored (PSNR, SSIM"
          f"{', identifiability' if not args.no_identifiability else ''}), no score_error")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
