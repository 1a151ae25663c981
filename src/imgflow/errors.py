"""Exceptions and the closed set of reasons an image can be turned away.

    ImgflowError
    ├── ConfigError       the configuration file or an option is invalid
    ├── UsageError        the command line names no usable input or output
    └── ImageError        one image could not go through a stage
        ├── Rejected      the image breaks a validation rule (deterministic)
        └── StageFailed   a stage failed for a reason a retry might cure

Rejections are outcomes, not errors: the run records them and goes on.
"""

from __future__ import annotations

import enum
import errno


class Reason(enum.StrEnum):
    """Reason an image was rejected or failed, stored in the catalog and report."""

    EMPTY_FILE = "empty_file"
    UNREADABLE = "unreadable"
    SOURCE_CHANGED = "source_changed"
    NOT_AN_IMAGE = "not_an_image"
    NOT_A_FILE = "not_a_file"
    FORMAT_NOT_ALLOWED = "format_not_allowed"
    FILE_TOO_LARGE = "file_too_large"
    TOO_MANY_PIXELS = "too_many_pixels"
    DEGENERATE_SIZE = "degenerate_size"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    DECODE_FAILED = "decode_failed"
    ENCODE_FAILED = "encode_failed"
    WRITE_FAILED = "write_failed"
    IO_ERROR = "io_error"
    WORKER_LOST = "worker_lost"
    TIMED_OUT = "timed_out"
    INTERNAL_ERROR = "internal_error"


class Status(enum.StrEnum):
    """Final state of one input image in a run."""

    DONE = "done"
    REJECTED = "rejected"
    FAILED = "failed"


class ExitCode(enum.IntEnum):
    """Process exit codes of the `imgflow` commands."""

    OK = 0
    SOME_IMAGES_NOT_DONE = 1
    USAGE = 2
    # 128 + SIGINT, as shells report a program ended by Ctrl-C.
    INTERRUPTED = 130


# Whether an image with this reason counts as rejected (the input is at fault
# and retrying cannot help) or failed (the environment or imgflow is at fault).
REASON_STATUS: dict[Reason, Status] = {
    Reason.EMPTY_FILE: Status.REJECTED,
    Reason.UNREADABLE: Status.FAILED,
    Reason.SOURCE_CHANGED: Status.FAILED,
    Reason.NOT_AN_IMAGE: Status.REJECTED,
    Reason.NOT_A_FILE: Status.REJECTED,
    Reason.FORMAT_NOT_ALLOWED: Status.REJECTED,
    Reason.FILE_TOO_LARGE: Status.REJECTED,
    Reason.TOO_MANY_PIXELS: Status.REJECTED,
    Reason.DEGENERATE_SIZE: Status.REJECTED,
    Reason.TRUNCATED: Status.REJECTED,
    Reason.CORRUPT: Status.REJECTED,
    Reason.DECODE_FAILED: Status.REJECTED,
    Reason.ENCODE_FAILED: Status.FAILED,
    Reason.WRITE_FAILED: Status.FAILED,
    Reason.IO_ERROR: Status.FAILED,
    Reason.WORKER_LOST: Status.FAILED,
    Reason.TIMED_OUT: Status.FAILED,
    Reason.INTERNAL_ERROR: Status.FAILED,
}


# Failures that may pass on another attempt: I/O, a lost worker, a time
# limit. Rejections are deterministic and never retried.
RETRYABLE = frozenset(
    {
        Reason.UNREADABLE,
        Reason.SOURCE_CHANGED,
        Reason.WRITE_FAILED,
        Reason.IO_ERROR,
        Reason.WORKER_LOST,
        Reason.TIMED_OUT,
    }
)


# File system errors that another attempt a few seconds later meets again:
# a folder or file in the wrong place, a read-only file system, a denied
# permission, a name the system refuses. A full disk, a failing device or a
# stale network handle may pass, so they are retried.
LASTING_ERRNOS = frozenset(
    {
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.EINVAL,
        errno.EEXIST,
    }
)


def is_lasting(exc: OSError) -> bool:
    """Return True when retrying the call that raised `exc` would fail the same way."""
    return exc.errno in LASTING_ERRNOS


class ImgflowError(Exception):
    """Root of every exception imgflow raises on purpose."""


class ConfigError(ImgflowError):
    """Raised at start-up when a configuration value is invalid."""


class UsageError(ImgflowError):
    """Raised when the command line cannot be acted on (no input, bad output)."""


class ImageError(ImgflowError):
    """Raised by a stage when one image cannot continue through the pipeline."""

    lasting = False

    def __init__(self, reason: Reason, message: str, *, stage: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.stage = stage

    @property
    def status(self) -> Status:
        return REASON_STATUS[self.reason]


class Rejected(ImageError):
    """Raised when an image breaks a validation rule; retrying cannot help."""


class StageFailed(ImageError):
    """Raised when a stage fails for an environmental reason (I/O, encoder).

    `lasting` marks a failure that another attempt in the same run would
    meet again, such as a folder where an output file belongs. The image is
    not retried during the run, but still goes to the dead-letter queue, so
    that `imgflow dlq retry` takes it once the cause is fixed.
    """

    def __init__(
        self, reason: Reason, message: str, *, stage: str, lasting: bool = False
    ) -> None:
        super().__init__(reason, message, stage=stage)
        self.lasting = lasting
