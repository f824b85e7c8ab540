"""Write docs/config.md (every config key, every attack method) from the schema and the registries.

    python scripts/config_table.py            # rewrite docs/config.md
    python scripts/config_table.py --check    # exit 1 when docs/config.md differs from what the schema gives
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedsim.lab.config_doc import DOC_PATH, render, write  # noqa: E402


def main(argv: list[str]) -> int:
    if "--check" in argv:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.is_file() else ""
        if current != render():
            print(f"{DOC_PATH} is stale: run python scripts/config_table.py", file=sys.stderr)
            return 1
        return 0
    print(write())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
