"""Sequential model: one image through every stage, then the next.

The lowest memory and the easiest to debug; libvips may still use its own
threads inside each image.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from imgflow.engines import vips
from imgflow.executors.base import Feeder, RunControl
from imgflow.executors.parallel import POLL_SECONDS
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
        control.probes.pools["sequential"] = lambda: [os.getpid()]
        while not feeder.finished:
            # The wait lets a retry that is not yet due come round.
            source = feeder.admit(wait=POLL_SECONDS)
            if source is None:
                continue
            result = pipeline.process(source)
            if feeder.complete(result):
                yield result
