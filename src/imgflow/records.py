"""Records passed between stages and executors.

Images travel by reference: a record names a file and its SHA-256, never
pixels, so every record pickles cheaply to a worker process or a queue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from imgflow.errors import Reason, Status


def display_path(path: str) -> str:
    """Return `path` as valid UTF-8 text that no other path shares.

    Each byte that is not valid UTF-8 becomes a backslash escape such as
    \\xe9, and a backslash in the name is doubled, so a file named with
    those four characters keeps a different text. `path_of_text` reverses it.
    """
    escaped = path.replace("\\", "\\\\")
    return escaped.encode("utf-8", "surrogateescape").decode(
        "utf-8", "backslashreplace"
    )


_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def path_of_text(text: str) -> str:
    """Return the path whose `display_path` is `text`."""

    def unescape(match: re.Match[str]) -> str:
        escape = match.group(1)
        if escape == "\\":
            return "\\"
        # surrogateescape stores an undecodable byte as U+DC80 to U+DCFF.
        return chr(0xDC00 + int(escape[1:], 16))

    return _ESCAPE.sub(unescape, text)


@dataclass(frozen=True, slots=True)
class Source:
    """One input file, with its position in the input order."""

    index: int
    path: str
    size: int = -1
    mtime_ns: int = -1

    @property
    def text(self) -> str:
        """The path as valid UTF-8 text, for the catalog, reports and logs.

        A file name that is not valid UTF-8 keeps its undecodable bytes as
        backslash escapes, the same way every time.
        """
        return display_path(self.path)


@dataclass(frozen=True, slots=True)
class Header:
    """Header facts read by validation, before any decode."""

    format: str
    width: int
    height: int
    bands: int
    bit_depth: int
    pages: int
    orientation: int
    progressive: bool
    interpretation: str = "srgb"
    has_profile: bool = False
    # False when the orientation comes from metadata libvips does not read,
    # so the engine applies it after loading.
    oriented_on_load: bool = True

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) after EXIF orientation, as a viewer shows it."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True, slots=True)
class VariantRecord:
    """One written output file; `path` is relative to the output folder."""

    name: str
    path: str
    width: int
    height: int
    format: str
    bytes: int
    sha256: str
    # The file's modification time once written, so that a later run
    # notices a variant replaced by another file of the same size.
    mtime_ns: int = -1


@dataclass(slots=True)
class ImageResult:
    """The outcome of one source through the pipeline."""

    source: Source
    status: Status
    key: str | None = None
    sha256: str | None = None
    stage: str | None = None
    reason: Reason | None = None
    message: str | None = None
    variants: list[VariantRecord] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    engine: str | None = None
    attempts: int = 1
    traceback: str | None = None
    # Seconds per stage (ingest, validate, transform, metadata, store) for
    # the stages this image went through.
    timings: dict[str, float] = field(default_factory=dict)
    # Seconds from the first admission of the source to this final result:
    # waits in queues and batches and every retry included.
    latency: float | None = None
    # A failure that another attempt in this run would meet again, so the
    # run does not retry it (see StageFailed).
    lasting: bool = False

    def to_report(self) -> dict[str, Any]:
        """Return the JSON form used by the run report."""
        return {
            "source": self.source.text,
            "status": self.status.value,
            "key": self.key,
            "stage": self.stage,
            "reason": self.reason.value if self.reason else None,
            "message": self.message,
            "variants": {
                variant.name: {
                    "path": variant.path,
                    "width": variant.width,
                    "height": variant.height,
                    "format": variant.format,
                }
                for variant in self.variants
            },
            "warnings": list(self.warnings),
            "engine": self.engine,
            "attempts": self.attempts,
            "seconds": round(self.seconds, 4),
            "latency_seconds": None if self.latency is None else round(self.latency, 4),
            "stage_seconds": {
                stage: round(seconds, 4) for stage, seconds in self.timings.items()
            },
        }
