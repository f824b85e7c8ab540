"""Write docs/config.md (every config key, every attack method) and the README's attack-method list from the
schema and the registries.

    python scripts/config_table.py            # rewrite docs/config.md and the README's generated block
    python scripts/config_table.py --check    # exit 1 when either differs from what the schema gives
"""

from __future__ import annotations

import sys

from fedsim.lab.config_doc import stale, write


def main(argv: list[str]) -> int:
    if "--check" in argv:
        old = stale()
        for path in old:
            print(f"{path} is stale: run python scripts/config_table.py", file=sys.stderr)
        return 1 if old else 0
    for path in write():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
