"""The runtime trap: while armed, any read of ground truth or of a client's data by the code under test is recorded
(and raises, which an attack turns into a failed result; the record is what the tests assert on, since the
pipeline catches every exception of an attack).

What counts as a read, whatever module or name the code reaches it by:

- *the audit store*: any file or folder under ``<run>/audit`` opened, listed or globbed (Python's audit hooks, PEP
  578: ``open``, ``os.listdir``, ``os.scandir``, ``glob.glob``; and safetensors' Rust reader, patched); the run
  folder's ``RunFolder.audit`` / ``audit_file``; every function of ``fedsim.evaluation.truth``;
- *a client's split*: the ``train_x`` / ``train_y`` (or ``__dict__``) of any loaded dataset (``ImageDataset``,
  the memory-mapped ``StoredDataset``), a file of the dataset store's train split (``train_x.npy``,
  ``train_y.npy``), the source files the dataset's loader reads (recorded by :meth:`Trap.record_sources`), and
  ``fedsim.core.experiment``'s ``client_data`` / ``client_indices``.

The public split reaches an attack the sanctioned way, before the trap is armed: the server's
``fedsim.evaluation.attacking.data_spec`` (``DataSpec.public_aux``, the held-out half of the test split) and
``generative_options`` (the prior's public training images).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

#: the trap in force, or None (Python's audit hooks cannot be removed: one hook per process consults this)
_ARMED: list["Trap"] = []
_HOOKED: list[bool] = []
TRAIN_SPLIT = ("train_x", "train_y")
STORE_TRAIN_FILES = ("train_x.npy", "train_y.npy")
FILE_EVENTS = ("open", "os.listdir", "os.scandir", "glob.glob", "os.walk")


def _path_of(value: Any) -> str | None:
    if isinstance(value, (str, bytes, os.PathLike)):
        try:
            return os.path.abspath(os.fsdecode(value))
        except (TypeError, ValueError):
            return None
    return None


def _hook(event: str, args: tuple) -> None:
    if not _ARMED or event not in FILE_EVENTS or not args:
        return
    trap = _ARMED[-1]
    if trap.recording is not None:
        path = _path_of(args[0])
        if path is not None and event == "open":
            trap.recording.add(path)
        return
    trap.check_path(args[0], event)


class TrapSprung(AssertionError):
    """A read of ground truth or of a client's data while the trap was armed."""


class Trap:
    """Records forbidden reads while armed (see the module docstring). ``violations``: one line per read."""

    def __init__(self, run_dir: str | Path) -> None:
        self.audit = os.path.abspath(Path(run_dir) / "audit")
        self.sources: set[str] = set()
        self.violations: list[str] = []
        self.recording: set[str] | None = None
        self.armed = False

    # ---- what is forbidden -----------------------------------------------------------------------------
    def spring(self, what: str) -> None:
        if self.armed:
            self.violations.append(what)
            raise TrapSprung(f"ground-truth trap: {what}")

    def forbidden(self, path: str) -> str | None:
        if path == self.audit or path.startswith(self.audit + os.sep):
            return "the audit store"
        if os.path.basename(path) in STORE_TRAIN_FILES:
            return "the dataset store's train split"
        if path in self.sources:
            return "a source file of the dataset (the clients' split is in it)"
        return None

    def check_path(self, value: Any, how: str) -> None:
        path = _path_of(value)
        what = self.forbidden(path) if path is not None and self.armed else None
        if what is not None:
            self.spring(f"{how} {path}: {what}")

    @contextlib.contextmanager
    def record_sources(self) -> Iterator[None]:
        """Record the files opened inside (the dataset's loader, called by the test) as the dataset's sources."""
        _install()
        self.recording = set()
        _ARMED.append(self)
        try:
            yield
        finally:
            _ARMED.remove(self)
            self.sources |= {p for p in self.recording if not p.endswith((".py", ".pyc", ".so"))}
            self.recording = None

    # ---- arming ----------------------------------------------------------------------------------------
    def patches(self) -> list[tuple[Any, str, Any]]:
        """(owner, attribute, replacement) for every Python-level way to the forbidden data."""
        import safetensors
        import safetensors.torch

        import fedsim.core.experiment as experiment
        import fedsim.evaluation.truth as truth
        from fedsim.core.data.core import ImageDataset
        from fedsim.core.data.store import StoredDataset
        from fedsim.core.runfolder import RunFolder

        out: list[tuple[Any, str, Any]] = []
        for name, fn in inspect.getmembers(truth, inspect.isfunction):
            if fn.__module__ == truth.__name__:
                out.append((truth, name, self._refuse(f"fedsim.evaluation.truth.{name}()", fn)))
        for name in ("client_data", "client_indices"):
            out.append((experiment, name, self._refuse(f"fedsim.core.experiment.{name}()", getattr(experiment, name))))
        out.append((RunFolder, "audit", property(self._refuse("RunFolder.audit", RunFolder.audit.fget))))
        out.append((RunFolder, "audit_file", self._refuse("RunFolder.audit_file()", RunFolder.audit_file)))
        for cls in (ImageDataset, StoredDataset):
            out.append((cls, "__getattribute__", self._split_guard(cls)))
        for module in (safetensors, safetensors.torch):
            if hasattr(module, "safe_open"):
                out.append((module, "safe_open", self._checked_open(module.safe_open, "safetensors.safe_open")))
        out.append((safetensors.torch, "load_file", self._checked_open(safetensors.torch.load_file,
                                                                       "safetensors.torch.load_file")))
        return out

    def _refuse(self, what: str, real: Callable) -> Callable:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            self.spring(f"called {what}")
            return real(*args, **kwargs)
        return refuse

    def _checked_open(self, real: Callable, what: str) -> Callable:
        def opened(path: Any, *args: Any, **kwargs: Any) -> Any:
            self.check_path(path, what)
            return real(path, *args, **kwargs)
        return opened

    def _split_guard(self, cls: type) -> Callable:
        real = cls.__getattribute__
        trap = self

        def guarded(obj: Any, name: str) -> Any:
            if trap.armed and (name in TRAIN_SPLIT or name == "__dict__" and not _from_functools()):
                trap.spring(f"read {cls.__name__}.{name}")
            return real(obj, name)
        return guarded

    @contextlib.contextmanager
    def armed_for(self, monkeypatch) -> Iterator["Trap"]:
        """Arm the trap inside the block (the patches are installed with ``monkeypatch`` and stay in place,
        inert, until the test ends)."""
        _install()
        for owner, name, value in self.patches():
            monkeypatch.setattr(owner, name, value)
        _ARMED.append(self)
        self.armed = True
        try:
            yield self
        finally:
            self.armed = False
            _ARMED.remove(self)


def _from_functools() -> bool:
    """Whether ``__dict__`` is read by ``functools.cached_property`` (a cached test split), not by the code."""
    return sys._getframe(2).f_code.co_filename.endswith("functools.py")


def _install() -> None:
    if not _HOOKED:
        sys.addaudithook(_hook)
        _HOOKED.append(True)
