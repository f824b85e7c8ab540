"""``fedsim data get NAME --to DIR``: fetch a public dataset with torchvision's own downloaders, on request.

Nothing downloads unless this command is run: the loaders (``fedsim.core.data.sources``) read files already on
disk and, when they are missing, name this command. torchvision does the work (its URLs, mirrors, md5 checks
and extraction): the files land in DIR exactly as ``torchvision.datasets.<Class>(DIR, download=True)`` lays them
out, and on success the command prints the config lines that read them. Offline, or when the host cannot be
reached, it prints one line saying which host and why, and exits 1 (torchvision's own chatter is held back).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse


@dataclass(frozen=True)
class Fetchable:
    """A dataset ``fedsim data get`` fetches: torchvision's class, the fedsim dataset that reads the files and
    the ``data.data_dir`` to give it (relative to DIR)."""

    torchvision_class: str
    dataset: str
    data_dir: str = ""


FETCHABLE = {
    "cifar10": Fetchable("CIFAR10", "cifar10"),
    "cifar100": Fetchable("CIFAR100", "cifar100"),
    "mnist": Fetchable("MNIST", "mnist"),
    # fedsim's fashion_mnist reads the four IDX .gz files; torchvision keeps them in FashionMNIST/raw
    "fashion_mnist": Fetchable("FashionMNIST", "fashion_mnist", "FashionMNIST/raw"),
}


def add_parser(sub) -> None:
    """``fedsim data get`` on the CLI's sub-parsers."""
    data = sub.add_parser("data", help="datasets: fetch a public one on request (`fedsim data get cifar10 --to DIR`)")
    actions = data.add_subparsers(dest="data_command", required=True)
    get = actions.add_parser("get", help="download a public dataset with torchvision's downloader and print the "
                             "data.data_dir line that reads it (needs internet; nothing else ever downloads)")
    get.add_argument("name", choices=sorted(FETCHABLE), help="which dataset")
    get.add_argument("--to", required=True, metavar="DIR", help="folder to download into (created)")
    get.set_defaults(func=cmd_get)


def cmd_get(args: argparse.Namespace) -> int:
    target = Path(args.to).expanduser().resolve()
    try:
        lines = get(args.name, target)
    except FetchError as exc:
        print(f"fedsim data get: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


class FetchError(Exception):
    """A download that did not complete: one line saying why."""


def get(name: str, target: Path) -> list[str]:
    """Download ``name``'s train and test splits into ``target`` with torchvision; the config lines to read them."""
    if name not in FETCHABLE:
        raise FetchError(f"name: {name!r} is not one of {', '.join(sorted(FETCHABLE))}")
    spec = FETCHABLE[name]
    import torchvision.datasets

    cls = getattr(torchvision.datasets, spec.torchvision_class)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"--to: cannot create {target}: {exc.strerror or exc}") from None
    chatter = io.StringIO()  # torchvision prints each URL and mirror it tries: kept back, one line instead
    quiet = contextlib.redirect_stderr(chatter) if not sys.stderr.isatty() else contextlib.nullcontext()
    try:
        with contextlib.redirect_stdout(chatter), quiet:
            for train in (True, False):
                cls(str(target), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line naming the host and the reason
        raise FetchError(f"could not download {name} from {host_of(cls)}: {reason(exc)}") from None
    data_dir = target / spec.data_dir if spec.data_dir else target
    return [f'data.dataset = "{spec.dataset}"', f'data.data_dir = "{data_dir}"']


def host_of(cls) -> str:
    """The first host torchvision tries for ``cls`` (its ``mirrors`` or ``url``)."""
    urls = [*getattr(cls, "mirrors", []), getattr(cls, "url", "")]
    for url in urls:
        if url and urlparse(str(url)).hostname:
            return str(urlparse(str(url)).hostname)
    return "torchvision's servers"


def reason(exc: BaseException) -> str:
    """The root cause in a few words: the network error under torchvision's wrapping, else the exception."""
    from urllib.error import URLError

    seen, cur = set(), exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, URLError):
            inner = cur.reason
            text = getattr(inner, "strerror", None) or str(inner)
            return f"host unreachable ({text})"
        if isinstance(cur, (ConnectionError, TimeoutError)):
            return f"host unreachable ({type(cur).__name__}: {cur})"
        cur = cur.__cause__ or cur.__context__
    text = " ".join(str(exc).split())
    if "urlopen error" in text:  # MNIST-style: torchvision lists each mirror's URLError in a RuntimeError
        detail = text.split("urlopen error", 1)[1].split(">", 1)[0].strip()
        return f"host unreachable ({detail}; every mirror failed)"
    return f"{type(exc).__name__}: {text[:200]}"
