"""Sequential model: one image through every stage, then the next.

The lowest memory and the easiest to debug; libvips may still use its own
threads inside each image.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from imgflow.engines import vips
from imgflow.executors.base import Feeder, RunControl
from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source


class SequentialExecutor:
    name = "sequential"
    workers = 1

    def run(
        self, pipeline: Pipeline, sources: Iterable[Source], control: RunControl
    ) -> Iterator[ImageResult]:
        vips.configure_worker(threads=None)
        feeder = Feeder(sources, control)
        while (source := feeder.admit()) is not None:
            result = pipeline.process(source)
            feeder.complete(source)
            yield result
