"""Checks and the lock on an output folder, taken before any work starts."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from imgflow.errors import ImgflowError, UsageError
from imgflow.stages.store import LOCK_NAME, write_atomic


def check_writable(out_dir: Path) -> Path | None:
    """Create `out_dir` if needed and prove a file can be written in it.

    Returns the outermost folder it created, for `remove_created`, or None.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a folder")
    created = None
    for folder in (out_dir, *out_dir.parents):
        if folder.exists():
            break
        created = folder
    probe = out_dir / f".imgflow-probe.{os.getpid()}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"cannot write to the output folder {out_dir}: {exc.strerror or exc}"
        ) from None
    return created


def remove_created(out_dir: Path, created: Path | None) -> None:
    """Remove the folders `check_writable` created, up to `created`, if empty."""
    if created is None:
        return
    for folder in (out_dir, *out_dir.parents):
        try:
            folder.rmdir()
        except OSError:
            return  # Not empty, or already gone: keep the rest too.
        if folder == created:
            return


def check_output_file(path: Path, option: str) -> Path:
    """Check that a report file can be written at `path`; return where to write.

    Reports are written to a temporary file and renamed over the target.
    So a symlink is followed: the report replaces its target and the link
    stays. An existing path that is not a regular file (a folder, a device
    such as /dev/stdout, a FIFO) is rejected rather than replaced.
    `option` names the command-line option in messages.
    """
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file():
        kind = "a folder" if target.is_dir() else "not a regular file"
        raise UsageError(f"{option} {path} is {kind}; name a regular file")
    parent = target.parent
    if not parent.is_dir():
        problem = "is not a folder" if parent.exists() else "does not exist"
        raise UsageError(f"{option} {path}: {parent} {problem}")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".imgflow-probe."):
            pass
    except OSError as exc:
        raise UsageError(
            f"{option} {path}: cannot write in the folder {parent}: "
            f"{exc.strerror or exc}"
        ) from None
    return target


def write_output_file(path: Path, data: bytes, option: str) -> None:
    """Write a report file atomically, with the checks of `check_output_file`.

    Raises UsageError naming `option` when the file cannot be written.
    """
    target = check_output_file(path, option)
    try:
        write_atomic(target, data, fsync=False)
    except ImgflowError as exc:
        raise UsageError(f"{option} {path}: {exc}") from None


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
