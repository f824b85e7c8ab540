"""List-valued config keys: a TOML array or a comma-separated string, both valid (``label_methods = ["ilrg", "gi"]``
is ``label_methods = "ilrg,gi"``).

Flower's run config holds only bool/int/float/str values (``flwr.common.config.flatten_dict`` refuses a list),
and the resolved ``config.toml`` that ``fedsim`` submits to ``flwr run --run-config`` is such a run config. So a
list key stays a string field of ``ExperimentConfig``: an array is joined into its comma-separated string when the
config is read (:func:`list_value`, from ``fedsim.core.config.from_flat``), and every reader splits it with
:func:`comma_list`, the one split of such a value. A key is a list key when its field says so (``opt(...,
listed=True)``, metadata ``"list"``). A hand-run ``flwr run . --run-config FILE`` reads FILE itself, before fedsim:
there an array is refused by Flower; use the comma-separated string.
"""

from __future__ import annotations

import tomllib
from typing import Any

from fedsim.core.errors import ConfigError


def comma_list(value: Any) -> tuple[str, ...]:
    """``"ilrg, gi"`` or ``["ilrg", "gi"]`` -> ``("ilrg", "gi")``: items stripped, blanks left out; ``None`` / ``""``
    -> ``()``; a number is one item (``3`` -> ``("3",)``)."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    return tuple(t for t in (str(item).strip() for item in items) if t)


def list_value(key: str, value: Any) -> str:
    """The comma-separated string a list key holds: an array's items joined with ``,`` (also one written as TOML
    text, ``--set 'attack.label_methods=["ilrg","gi"]'``); a string as given; an integer as its digits. Anything
    else is a one-line ``ConfigError`` naming the key."""
    if isinstance(value, str):
        value = array_text(value)
        if isinstance(value, str):
            return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, (list, tuple)):
        bad = [v for v in value if isinstance(v, bool) or not isinstance(v, (str, int))]
        if not bad:
            return ",".join(str(v).strip() for v in value)
        raise ConfigError(f"{key}: expected a list of names or integers (or one comma-separated string), got "
                          f"{bad[0]!r} in {list(value)!r}")
    raise ConfigError(f"{key}: expected a list (e.g. [\"a\", \"b\"]) or a comma-separated string, got {value!r}")


def array_text(text: str) -> Any:
    """Text written as a TOML array (``["ilrg","gi"]``, or ``[ilrg, gi]`` as a shell leaves it) read as a list;
    any other text as given (``ilrg,gi`` is already the comma-separated form)."""
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return text
    try:
        return tomllib.loads(f"v = {stripped}")["v"]
    except tomllib.TOMLDecodeError:
        return [t.strip("\"'") for t in comma_list(stripped[1:-1])]
