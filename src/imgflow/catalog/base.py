"""The catalog contract: where results of every run are recorded.

One writer per output folder (the run's coordinating process) calls these
methods, so an implementation needs no locking of its own. The SQL in the
SQLite implementation sticks to what PostgreSQL also accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from imgflow.records import ImageResult


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The request a run was started with."""

    mode: str
    workers: int
    config_sha256: str
    inputs: list[str]
    config_json: str = "{}"


class Catalog(Protocol):
    def start_run(self, run: RunInfo) -> int:
        """Record the start of a run and return its id."""
        ...

    def record(self, run_id: int, result: ImageResult) -> None:
        """Store the outcome of one image, replacing any earlier outcome."""
        ...

    def finish_run(self, run_id: int, counts: dict[str, int]) -> None:
        """Record the end of a run with its outcome counts, and commit."""
        ...

    def images(self) -> list[dict[str, Any]]:
        """Return every image row, ordered by source path."""
        ...

    def variants(self) -> list[dict[str, Any]]:
        """Return every variant row, ordered by source path and name."""
        ...

    def rejections(self) -> list[dict[str, Any]]:
        """Return every rejected or failed image, ordered by source path."""
        ...

    def close(self) -> None: ...
