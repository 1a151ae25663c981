"""The executor contract shared by every execution model.

An executor takes a pipeline and an iterable of sources and yields one
`ImageResult` per source, in completion order; callers that need input
order sort by `result.source.index`. It pulls sources lazily and keeps a
bounded number in flight, so memory does not grow with the input count.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source


class Executor(Protocol):
    name: str
    workers: int

    def run(
        self, pipeline: Pipeline, sources: Iterable[Source]
    ) -> Iterator[ImageResult]:
        """Process every source and yield its result as it completes."""
        ...
