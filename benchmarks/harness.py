"""The benchmark harness: what the scripts in ``benchmarks/`` share, so that each script holds only its question.

Common flags (``parser``: seeds, steps, repeats, threads, device, cases, batches, quick, out, json, render), the
victims every inversion study draws (``foolbox_batch``, ``mnist_batch``), cell bookkeeping (``record``: a
progress line per cell and the JSON rewritten after each, so a long run that is stopped keeps what it measured),
tables (``markdown``, ``spread``, ``groups``, ``picks``) and result files with the machine's facts and the exact
command line (``write_json`` / ``read_rows``). Results live in ``benchmarks/results/``; the pages that state them
in ``docs/benchmarks/``.

Run a benchmark as a module from the repository root: ``.venv/bin/python -m benchmarks.NAME --help`` (fedsim is
installed editable; ``benchmarks`` is a package of the checkout, never installed, and edits no ``sys.path``). Run
from the root: opacus 1.6 installs a top-level ``benchmarks`` package of its own into site-packages, which a
``python benchmarks/NAME.py`` (or a run from another folder) would import instead of this one.
Written here rather than taken from a benchmarking library (pytest-benchmark, asv): those time functions; these
scripts measure attack quality over seeds and cases and write the tables the docs quote.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"  # raw cells (JSON) and figures (PNG)
PAGES = ROOT / "docs" / "benchmarks"  # the pages that state today's numbers

# flag name -> (option string, argparse keywords given the script's default)
_FLAGS: dict[str, Callable[[Any], tuple[str, dict]]] = {
    "seeds": lambda d: ("--seeds", dict(type=int, default=d, help=f"seeds 0..N-1 (default {d})")),
    "seed_list": lambda d: ("--seeds", dict(type=int, nargs="+", default=d, help=f"the seeds (default {d})")),
    "steps": lambda d: ("--steps", dict(type=int, default=d, help=f"attack iterations (default {d})")),
    "repeats": lambda d: ("--repeats", dict(type=int, default=d, help=f"repetitions to take a median of "
                                                                       f"(default {d})")),
    "threads": lambda d: ("--threads", dict(type=int, default=d, help=f"torch intra-op threads (default {d}; 1: no "
                                                                       "oversubscription on a shared machine)")),
    "device": lambda d: ("--device", dict(default=d, help=f"cpu, cuda or cuda:N (default {d})")),
    "cases": lambda d: ("--cases", dict(default=d, help=f"comma-separated case names, or all (default {d})")),
    "batches": lambda d: ("--batches", dict(default=d, help=f"comma-separated batch sizes (default {d})")),
    "quick": lambda d: ("--quick", dict(action="store_true", help="the smallest run (minutes)")),
    "out": lambda d: ("--out", dict(default=str(d), help=f"where the output goes (default {d})")),
    "json": lambda d: ("--json", dict(default=d, help="write every cell here (with the command and the machine)")),
    "render": lambda d: ("--render", dict(nargs="+", default=d, help="only print the table of earlier --json "
                                                                      "files")),
}


def parser(doc: str | None, **flags: Any) -> argparse.ArgumentParser:
    """An argument parser with the script's docstring as its help and the common ``flags`` (name=default)."""
    lines = (doc or "").strip().splitlines()
    p = argparse.ArgumentParser(description=lines[0] if lines else None,
                                epilog="\n".join(lines[1:]).strip() or None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, **flags)
    return p


def add_flags(p: argparse.ArgumentParser, **flags: Any) -> argparse.ArgumentParser:
    """Add the common ``flags`` (name=default) to ``p`` (a parser or a sub-command's parser)."""
    for name, default in flags.items():
        if name not in _FLAGS:
            raise ValueError(f"harness flag {name!r} is not one of {', '.join(_FLAGS)}")
        option, kwargs = _FLAGS[name](default)
        p.add_argument(option, **kwargs)
    return p


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse, set torch's threads where the script has ``--threads``, and keep the command line on ``args``."""
    args = p.parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    args.command = command(argv)
    return args


def command(argv: Sequence[str] | None = None) -> str:
    """The command line that reproduces this run, as ``python -m benchmarks.NAME ARGS``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = spec.name if spec is not None and spec.name != "__main__" else \
        f"benchmarks.{Path(sys.argv[0]).stem}"
    return f"python -m {name} " + shlex.join(list(sys.argv[1:] if argv is None else argv))


def machine() -> str:
    """The machine's facts a number needs beside it: CPU, cores, load, torch and Python versions."""
    try:
        import torch

        torch_text = f"torch {torch.__version__} ({torch.get_num_threads()} thread(s))"
    except ImportError:  # pragma: no cover
        torch_text = "no torch"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, load average {load}, "
            f"{torch_text}, Python {platform.python_version()}")


def write_json(path: str | Path, rows: Any, command_line: str | None = None, **meta: Any) -> Path:
    """Write ``{"command", "machine", **meta, "rows"}`` to ``path`` (its folder made); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": command_line or command(), "machine": machine(), **meta, "rows": rows}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


def read_rows(path: str | Path) -> list:
    """The cells of a result file: ``rows`` of a ``write_json`` file, or the bare list that results written
    before the harness hold."""
    data = json.loads(Path(path).read_text())
    return data["rows"] if isinstance(data, dict) and "rows" in data else data


def record(rows: list, row: dict, json_path: str | Path | None = None, command_line: str | None = None,
           show: Iterable[str] | None = None) -> dict:
    """Append a finished cell, print it (its ``show`` keys, floats rounded) and rewrite ``json_path``."""
    rows.append(row)
    shown = {k: row[k] for k in show} if show is not None else row
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in shown.items()}), flush=True)
    if json_path:
        write_json(json_path, rows, command_line)
    return row


def ints(text: str) -> list[int]:
    return [int(v) for v in str(text).split(",") if v.strip()]


def floats(text: str) -> list[float]:
    return [float(v) for v in str(text).split(",") if v.strip()]


def choose(p: argparse.ArgumentParser, flag: str, text: str, valid: Iterable[str]) -> list[str]:
    """The comma-separated names of ``text`` (``all``: every valid one); a name not valid is a usage error."""
    valid = list(valid)
    names = valid if text == "all" else [n for n in text.split(",") if n]
    bad = [n for n in names if n not in valid]
    if bad:
        p.error(f"{flag}: {', '.join(map(repr, bad))} not among {', '.join(valid)}")
    return names


# ----------------------------------------------------------------------------------------------------- tables
def markdown(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def spread(values: Sequence[float], digits: int = 2, signed: bool = False) -> str:
    """``mean [min, max]`` (one value: itself; none: ``-``); ``signed``: with a sign (differences)."""
    values = list(values)
    f = f"{'+' if signed else ''}.{digits}f"
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], f)
    return f"{format(statistics.mean(values), f)} [{format(min(values), f)}, {format(max(values), f)}]"


def groups(rows: Iterable[dict], *keys: str) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of ``keys``, in the order the groups first appear."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def mean(cells: Iterable[Any], key: str | Callable[[Any], float]) -> float:
    get = key if callable(key) else (lambda c: c[key])
    return statistics.mean(get(c) for c in cells)


def picks(cells: Iterable[Any], key: str | Callable[[Any], Any]) -> str:
    """The per-seed picks of a rule, as ``a/b/c``."""
    get = key if callable(key) else (lambda c: c[key])
    return "/".join(f"{float(get(c)):g}" for c in cells)


# ----------------------------------------------------------------------------------------------------- victims
def normalised_victims(name: str):
    """(every foolbox image of ``name`` in model space, labels, classes, mean, std)."""
    import torch

    from fedsim.core.data.victims import load_victims

    x, y, classes, mean_, std = load_victims(name)
    m, s = torch.tensor(mean_).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    return (x - m) / s, y, classes, mean_, std


def foolbox_batch(name: str, k: int, seed: int):
    """(images in model space, labels, classes, mean, std) of the benchmark's batch: the foolbox test images
    ``(7 seed + i) mod 20``, i < k (cifar10, cifar100, mnist)."""
    import torch

    x, y, classes, mean_, std = normalised_victims(name)
    idx = torch.tensor([(seed * 7 + i) % len(x) for i in range(k)])
    return x[idx], y[idx].clone(), classes, mean_, std


def mnist_batch(data, k: int, seed: int):
    """(images in model space, labels) of seed ``seed``: K digits of the ``mnist_subset`` train split, shuffled
    once (generator 4321), disjoint across seeds."""
    import torch

    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(4321))
    idx = order[k * seed:k * seed + k]
    return data.normalize(data.train_x[idx]), data.train_y[idx].clone()


def aligned_psnr(rec, gt, mean_, std) -> float:
    """Mean PSNR (pixel space) of the optimal one-to-one assignment of reconstructions to true images (scipy's
    Hungarian solver): the benchmarks' cheap score for curves and candidate rankings."""
    from scipy.optimize import linear_sum_assignment

    from fedsim.core.metrics.images import psnr_matrix, to_pixels

    mat = psnr_matrix(to_pixels(rec, mean_, std), to_pixels(gt, mean_, std)).numpy()
    r, c = linear_sum_assignment(-mat)
    return float(mat[r, c].mean())
