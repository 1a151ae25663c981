"""Hybrid model: small photos in batches and first, large ones alone, on one pool.

Small baseline JPEGs go in batches, which saves a round trip per image.
Large and slow kinds (over the pixel threshold, progressive, animated,
tagged with a colour profile, or another format) go one at a time, the
costliest first. Both kinds share one pool of worker processes, one per
core by default, so no core idles while the other kind has work.

With two or more workers, large images may occupy every worker but one
while small photos wait, and they start as soon as they are admitted. A
small photo then waits for at most one running task, and the longest
images do not start last, where one would hold a core while the others
idle. With one worker, small batches go first.

Each task names its engine. Small batches run on libvips by default: the
Pillow fast path decodes corrupt or cut scans without a warning, and once
it checks each scan with libvips first, libvips is faster at every size
measured (benchmarks/hybrid_threshold.py, from 0.3 MP). `small_engine`
selects Pillow instead.

Routing reads each file's signature and header in the coordinating process
(well under a millisecond, no decode); workers then run the whole pipeline
on their images, as in the parallel model.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from imgflow.executors import worker
from imgflow.executors.base import Feeder, RunControl
from imgflow.executors.parallel import POLL_SECONDS, default_workers, result_of
from imgflow.executors.pool import Outcome, WorkerPool
from imgflow.executors.routing import (
    DEFAULT_SMALL_PIXELS,
    is_small_photo,
    peek_header,
    relative_cost,
)
from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source

DEFAULT_BATCH_SIZE = 4
# Large images admitted and waiting for a worker, per worker: enough to look
# past a run of large inputs for small ones, while the ordering window and
# the in-flight count stay small.
LARGE_BACKLOG_PER_WORKER = 8

ENGINES = ("vips", "pillow")


def process_batch_in_worker(task: tuple[str, list[Source]]) -> list[ImageResult]:
    engine, batch = task
    pipeline = worker.pipeline()
    return [pipeline.process(source, engine=engine) for source in batch]


_arrivals = itertools.count()


@dataclass(slots=True)
class _Backlog:
    """Sources routed to one engine and waiting for a worker.

    The costliest source leaves first. Sources of equal cost leave in the
    order they arrived, so a backlog given no costs is first in, first out.
    """

    engine: str
    batch_size: int
    # (negated cost, arrival number, source): a heap whose top is next.
    queue: list[tuple[float, int, Source]] = field(default_factory=list)
    # Members of a batch whose worker died, re-run one by one so that only
    # the image that kills its worker is charged an attempt.
    solo: list[Source] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.queue)

    def push(self, source: Source, cost: float = 0.0) -> None:
        heapq.heappush(self.queue, (-cost, next(_arrivals), source))

    def take(self, count: int) -> list[Source]:
        """Remove and return up to `count` sources, the next first."""
        count = min(count, len(self.queue))
        return [heapq.heappop(self.queue)[2] for _ in range(count)]

    def clear(self) -> list[Source]:
        """Remove and return every waiting source, re-runs included."""
        left = [entry[2] for entry in self.queue] + self.solo
        self.queue.clear()
        self.solo.clear()
        return left


class HybridExecutor:
    name = "hybrid"

    def __init__(
        self,
        workers: int | None = None,
        *,
        small_pixels: int = DEFAULT_SMALL_PIXELS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        small_engine: str = "vips",
        time_limit: float | None = None,
        max_rss: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if small_engine not in ENGINES:
            raise ValueError(
                f"small_engine must be one of {', '.join(ENGINES)}, got {small_engine!r}"
            )
        self.small_engine = small_engine
        self.workers = workers or default_workers()
        self.small_pixels = small_pixels
        self.batch_size = batch_size
        self.time_limit = time_limit
        self.max_rss = max_rss
        self._tasks = 0

    def _fill(
        self, feeder: Feeder, small: _Backlog, large: _Backlog, pipeline: Pipeline
    ) -> None:
        """Admit and route sources until a backlog has enough waiting.

        Large images may queue deeper than a round of work, so admission
        goes on past them and finds the small photos behind them, which are
        dispatched first. Only source references wait here, no pixels.
        """
        while (
            len(small) < self.batch_size * self.workers
            and len(large) < LARGE_BACKLOG_PER_WORKER * self.workers
        ):
            source = feeder.admit()
            if source is None:
                return
            header = peek_header(source.path)
            if header is not None and is_small_photo(
                source, header, pipeline.config, self.small_pixels
            ):
                small.push(source)
            else:
                large.push(source, relative_cost(header))

    def _next_task(
        self,
        small: _Backlog,
        large: _Backlog,
        more_coming: bool,
        large_running: int = 0,
    ) -> tuple[_Backlog, list[Source]] | None:
        """Pick the next task for an idle worker.

        `large_running` counts the workers busy with large images. They
        may hold every worker but one while small photos wait.
        """
        for backlog in (small, large):
            if backlog.solo:
                return backlog, [backlog.solo.pop(0)]
        if len(large) and (large_running < self.workers - 1 or not len(small)):
            return large, large.take(1)
        # A partial batch goes out only when no more sources are ready or no
        # large image waits, so batching never idles a worker that has work.
        full = len(small) >= small.batch_size
        if len(small) and (full or not more_coming or not len(large)):
            return small, small.take(small.batch_size)
        if len(large):
            return large, large.take(1)
        return None

    def run(
        self, pipeline: Pipeline, sources: Iterable[Source], control: RunControl
    ) -> Iterator[ImageResult]:
        feeder = Feeder(sources, control)
        small = _Backlog(self.small_engine, self.batch_size)
        large = _Backlog("vips", 1)
        pool = WorkerPool(
            self.workers,
            process_batch_in_worker,
            initializer=worker.start,
            initargs=(pipeline,),
            task_timeout=self.time_limit,
            max_rss=self.max_rss,
            name="hybrid",
        )
        control.probes.pools["hybrid"] = pool.pids
        control.probes.queues["small"] = lambda: len(small) + len(small.solo)
        control.probes.queues["large"] = lambda: len(large) + len(large.solo)
        running: dict[int, tuple[_Backlog, list[Source]]] = {}
        pending_results: list[ImageResult] = []
        try:
            while not control.abandoned:
                if control.stopping:
                    # Waiting sources never started: a stop leaves them.
                    for backlog in (small, large):
                        feeder.withdraw(backlog.clear())
                self._fill(feeder, small, large, pipeline)
                more_coming = not feeder.drained
                while pool.idle():
                    large_running = sum(
                        1 for backlog, _ in running.values() if backlog is large
                    )
                    task = self._next_task(small, large, more_coming, large_running)
                    if task is None:
                        break
                    backlog, batch = task
                    self._tasks += 1
                    # A batch gets the time limit once per image in it.
                    timeout = self.time_limit * len(batch) if self.time_limit else None
                    pool.submit(self._tasks, (backlog.engine, batch), timeout=timeout)
                    running[self._tasks] = (backlog, batch)
                # Handed over once the workers have their next tasks, so
                # none waits while the caller records these results.
                yield from pending_results
                pending_results.clear()
                if feeder.finished and not small.solo and not large.solo:
                    return
                for completion in pool.poll(POLL_SECONDS):
                    backlog, batch = running.pop(completion.task_id)
                    if completion.outcome is not Outcome.OK and len(batch) > 1:
                        backlog.solo.extend(batch)
                        continue
                    for result in self._results(batch, completion):
                        if feeder.complete(result):
                            pending_results.append(result)
            yield from pending_results
        finally:
            if control.abandoned:
                pool.terminate()
            else:
                pool.close()

    @staticmethod
    def _results(batch: list[Source], completion: Any) -> list[ImageResult]:
        if completion.outcome is Outcome.OK:
            results: list[ImageResult] = completion.value
            return results
        # The whole batch shared the lost or timed-out worker.
        return [result_of(source, completion) for source in batch]
