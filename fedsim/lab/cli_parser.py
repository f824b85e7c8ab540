"""The ``fedsim`` argument parser: argparse's, with "did you mean" on an invalid choice (``fedsim chek`` ->
``invalid choice: 'chek' (choose from ...); did you mean 'check'?``), for subcommands and every ``choices=``
argument (``fedsim list atacks``); and ``--set a=1 b=2`` (Flower's ``--run-config`` habit, unquoted) says each pair
needs its own ``--set``. Python's argparse suggests only from 3.14 on (``suggest_on_error``), and only for
subcommands; the matching is ``fedsim.core.suggest.did_you_mean``, as for config names."""

from __future__ import annotations

import argparse
import re
from typing import Any, Sequence

from fedsim.core.suggest import did_you_mean

_PAIR = re.compile(r"^[A-Za-z_][\w-]*\.[\w.-]+=")  # section.key=value: a --set value left without its flag


class SuggestingParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose invalid-choice error ends with the close choices. Subparsers are of the
    same class (argparse's ``add_subparsers`` uses the parent's class)."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is not None and value not in choices:
            listed = ", ".join(map(repr, choices))
            raise argparse.ArgumentError(
                action, f"invalid choice: {value!r} (choose from {listed}){did_you_mean(value, choices)}")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        """argparse's, with the hint for leftover ``section.key=value`` words: ``--set a=1 b=2`` gave ``b=2``
        no flag."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            pairs = [e for e in extras if _PAIR.match(e)]
            hint = f"; one key=value per --set: {' '.join(f'--set {p}' for p in pairs)}" if pairs else ""
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed
