"""The ``fedsim`` argument parser: argparse's, with "did you mean" on an invalid choice (``fedsim chek`` ->
``invalid choice: 'chek' (choose from ...); did you mean 'check'?``), for subcommands and every ``choices=``
argument (``fedsim list atacks``). Python's argparse suggests only from 3.14 on (``suggest_on_error``), and only
for subcommands; the matching is ``fedsim.core.suggest.did_you_mean``, as for config names."""

from __future__ import annotations

import argparse
from typing import Any

from fedsim.core.suggest import did_you_mean


class SuggestingParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose invalid-choice error ends with the close choices. Subparsers are of the
    same class (argparse's ``add_subparsers`` uses the parent's class)."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is not None and value not in choices:
            listed = ", ".join(map(repr, choices))
            raise argparse.ArgumentError(
                action, f"invalid choice: {value!r} (choose from {listed}){did_you_mean(value, choices)}")
