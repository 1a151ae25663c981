"""Hybrid model: route each image to the engine and pool that suit it.

Small baseline JPEGs go in batches to a lane of workers running the Pillow
fast path, which beats libvips below about a megapixel and saves a round
trip per image. Large and slow kinds (over the pixel threshold,
progressive, animated, tagged with a colour profile, or another format) go
one at a time to a separate libvips lane with its own size, so a slow image
never holds back a batch of small ones.

Routing reads each file's signature and header in the coordinating process
(well under a millisecond, no decode); workers then run the whole pipeline
on their images, as in the parallel model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from imgflow.engines import pillow
from imgflow.executors import worker
from imgflow.executors.base import Feeder, RunControl
from imgflow.executors.parallel import POLL_SECONDS, default_workers, result_of
from imgflow.executors.pool import Outcome, WorkerPool
from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source
from imgflow.stages.validate import peek_header

# NOTE: measured on 2 cores with libjpeg-turbo 3 (Pillow 13) and libvips
# 8.18: Pillow renders the three default variants faster up to about this
# size; docs/benchmarks.md has the runs behind it.
DEFAULT_SMALL_PIXELS = 1_500_000
DEFAULT_BATCH_SIZE = 4


def process_batch_in_worker(batch: list[Source]) -> list[ImageResult]:
    pipeline, engine = worker.pipeline(), worker.engine()
    return [pipeline.process(source, engine=engine) for source in batch]


@dataclass(slots=True)
class _Lane:
    pool: WorkerPool
    batch_size: int
    backlog: list[Source] = field(default_factory=list)
    running: dict[int, list[Source]] = field(default_factory=dict)
    # Members of a batch whose worker died, re-run one by one so that only
    # the image that kills its worker is charged an attempt.
    solo: list[Source] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return len(self.backlog) >= self.batch_size * self.pool.size


class HybridExecutor:
    name = "hybrid"

    def __init__(
        self,
        workers: int | None = None,
        *,
        large_workers: int | None = None,
        small_pixels: int = DEFAULT_SMALL_PIXELS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        time_limit: float | None = None,
        max_rss: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.workers = workers or default_workers()
        self.large_workers = large_workers or max(1, self.workers // 2)
        self.small_pixels = small_pixels
        self.batch_size = batch_size
        self.time_limit = time_limit
        self.max_rss = max_rss
        self._batches = 0

    def is_small(self, source: Source, pipeline: Pipeline) -> bool:
        """True when a source belongs on the Pillow fast path."""
        header = peek_header(source.path)
        return (
            header is not None
            and header.pixels <= self.small_pixels
            and pillow.can_render(header, pipeline.config)
            and source.size is not None
            and pillow.has_photo_density(source.size, header)
        )

    def _lane(self, pipeline: Pipeline, workers: int, engine: str, batch: int) -> _Lane:
        timeout = self.time_limit * batch if self.time_limit else None
        pool = WorkerPool(
            workers,
            process_batch_in_worker,
            initializer=worker.start,
            initargs=(pipeline, engine),
            task_timeout=timeout,
            max_rss=self.max_rss,
            name=f"{engine}-lane",
        )
        return _Lane(pool, batch)

    def _fill(
        self, feeder: Feeder, lanes: tuple[_Lane, _Lane], pipeline: Pipeline
    ) -> None:
        small, large = lanes
        while not small.full and not large.full:
            source = feeder.admit()
            if source is None:
                return
            lane = small if self.is_small(source, pipeline) else large
            lane.backlog.append(source)

    def _submit(self, lane: _Lane, more_coming: bool) -> None:
        while lane.pool.idle() and lane.solo:
            self._send(lane, [lane.solo.pop(0)])
        # A partial batch goes out only when no more sources are ready, so
        # batching never delays an image that could start now.
        while lane.pool.idle() and lane.backlog:
            if len(lane.backlog) < lane.batch_size and more_coming:
                return
            batch = lane.backlog[: lane.batch_size]
            del lane.backlog[: lane.batch_size]
            self._send(lane, batch)

    def _send(self, lane: _Lane, batch: list[Source]) -> None:
        self._batches += 1
        lane.pool.submit(self._batches, batch)
        lane.running[self._batches] = batch

    def _wait(self, lanes: tuple[_Lane, ...]) -> None:
        watched: list[Any] = []
        timeout = POLL_SECONDS
        for lane in lanes:
            watched += lane.pool.waitables()
            remaining = lane.pool.seconds_to_deadline()
            if remaining is not None:
                timeout = min(timeout, remaining)
        wait(watched, timeout)

    def run(
        self, pipeline: Pipeline, sources: Iterable[Source], control: RunControl
    ) -> Iterator[ImageResult]:
        feeder = Feeder(sources, control)
        lanes = (
            self._lane(pipeline, self.workers, "pillow", self.batch_size),
            self._lane(pipeline, self.large_workers, "vips", 1),
        )
        for lane in lanes:
            name = lane.pool.name
            control.probes.pools[name] = lane.pool.pids
            control.probes.queues[name] = lambda lane=lane: len(lane.backlog)  # type: ignore[misc]
        try:
            while not control.abandoned:
                self._fill(feeder, lanes, pipeline)
                more_coming = not feeder.drained and not any(
                    lane.full for lane in lanes
                )
                for lane in lanes:
                    self._submit(lane, more_coming)
                if feeder.finished and not any(lane.solo for lane in lanes):
                    return
                self._wait(lanes)
                for lane in lanes:
                    for completion in lane.pool.poll(0):
                        batch = lane.running.pop(completion.task_id)
                        if completion.outcome is not Outcome.OK and len(batch) > 1:
                            lane.solo.extend(batch)
                            continue
                        for result in self._results(batch, completion):
                            if feeder.complete(result):
                                yield result
        finally:
            for lane in lanes:
                if control.abandoned:
                    lane.pool.terminate()
                else:
                    lane.pool.close()

    @staticmethod
    def _results(batch: list[Source], completion: Any) -> list[ImageResult]:
        if completion.outcome is Outcome.OK:
            results: list[ImageResult] = completion.value
            return results
        # The whole batch shared the lost or timed-out worker.
        return [result_of(source, completion) for source in batch]
