"""A pipeline that misbehaves on cue, for fault-injection tests.

It lives in its own module so that spawned worker processes can import it.
The fault is chosen by the source file's name; a marker file records the
first attempt, so "once" faults pass on the retry.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from imgflow.pipeline import Described, Loaded, Pipeline
from imgflow.records import ImageResult, Source
from imgflow.stages.transform import Rendered


class FaultyPipeline(Pipeline):
    """Renders normally unless the file name requests a fault."""

    def __init__(self, *args: object, markers: Path, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.markers = markers

    def _first_attempt(self, name: str) -> bool:
        marker = self.markers / name
        if marker.exists():
            return False
        marker.write_bytes(b"")
        return True

    def _maybe_fail(self, stage: str, path: str) -> None:
        name = Path(path).stem
        if not name.endswith(f"_{stage}_once") or not self._first_attempt(name):
            return
        if name.startswith("ioerror_"):
            raise OSError(5, f"Input/output error in {stage}")
        if name.startswith("crash_"):
            os._exit(3)
        if name.startswith("hang_"):
            time.sleep(120)

    def load(self, source: Source, data: bytes | None = None) -> Loaded:
        self._maybe_fail("load", source.path)
        return super().load(source, data)

    def describe(self, loaded: Loaded, data: bytes) -> Described:
        self._maybe_fail("describe", loaded.source.path)
        return super().describe(loaded, data)

    def store(self, described: Described, rendered: list[Rendered]) -> ImageResult:
        self._maybe_fail("store", described.loaded.source.path)
        return super().store(described, rendered)

    def render(
        self, loaded: Loaded, data: bytes, *, engine: str = "vips"
    ) -> list[Rendered]:
        name = Path(loaded.source.path).stem
        if name.startswith("crash_always"):
            os._exit(3)
        if name == "crash_once" and self._first_attempt(name):
            os._exit(3)
        if name == "hang_once" and self._first_attempt(name):
            time.sleep(120)
        if name == "ioerror_once" and self._first_attempt(name):
            raise OSError(5, "Input/output error")
        return super().render(loaded, data, engine=engine)
