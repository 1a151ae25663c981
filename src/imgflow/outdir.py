"""Checks and the lock on an output folder, taken before any work starts."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from imgflow.errors import UsageError

LOCK_NAME = ".imgflow.lock"


def check_writable(out_dir: Path) -> None:
    """Create `out_dir` if needed and prove a file can be written in it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a folder")
    probe = out_dir / f".imgflow-probe.{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"cannot write to the output folder {out_dir}: {exc.strerror or exc}"
        ) from None


def check_report_path(path: Path) -> None:
    """Reject a report path that is a folder or whose folder cannot be written."""
    if path.is_dir():
        raise UsageError(f"--report {path} is a folder; name a file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--report {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--report {path}: the folder {parent} is not writable")


@contextlib.contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the output folder for one run.

    The lock is released when the process ends, however it ends, so a
    killed run never leaves the folder locked.
    """
    path = out_dir / LOCK_NAME
    try:
        handle = open(path, "a+")
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"the output folder {out_dir} is in use by another imgflow run; "
                "wait for it to finish or choose another --out"
            ) from None
        yield
    finally:
        handle.close()
