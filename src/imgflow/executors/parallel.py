"""Parallel model: a pool of worker processes, each taking whole images.

Each worker runs libvips with one thread: with one process per core,
threads inside an image only compete with the other workers. One image per
worker is in flight, so a folder of any size is read lazily.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator

from imgflow.errors import Reason, Status
from imgflow.executors import worker
from imgflow.executors.base import Feeder, RunControl
from imgflow.executors.pool import Completion, Outcome, WorkerPool
from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source

log = logging.getLogger(__name__)

# How often a waiting executor wakes to notice a stop request, in seconds.
POLL_SECONDS = 0.2


def process_in_worker(source: Source) -> ImageResult:
    return worker.pipeline().process(source)


def default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def result_of(source: Source, completion: Completion) -> ImageResult:
    """Turn a pool completion into the image's result, lost or not."""
    if completion.outcome is Outcome.OK:
        result: ImageResult = completion.value
        return result
    reason = Reason.WORKER_LOST
    if completion.outcome is Outcome.TIMED_OUT:
        reason = Reason.TIMED_OUT
    elif completion.outcome is Outcome.ERROR:
        reason = Reason.INTERNAL_ERROR
    # The pool has logged the loss with its task. The feeder logs a retry,
    # and the runner the final outcome with the number of attempts.
    log.debug("%s: %s", source.path, completion.message)
    return ImageResult(
        source=source,
        status=Status.FAILED,
        stage="worker",
        reason=reason,
        message=completion.message,
        seconds=completion.seconds,
    )


class ParallelExecutor:
    name = "parallel"

    def __init__(
        self,
        workers: int | None = None,
        *,
        time_limit: float | None = None,
        max_rss: int | None = None,
    ) -> None:
        self.workers = workers or default_workers()
        self.time_limit = time_limit
        self.max_rss = max_rss

    def run(
        self, pipeline: Pipeline, sources: Iterable[Source], control: RunControl
    ) -> Iterator[ImageResult]:
        feeder = Feeder(sources, control)
        pool = WorkerPool(
            self.workers,
            process_in_worker,
            initializer=worker.start,
            initargs=(pipeline,),
            task_timeout=self.time_limit,
            max_rss=self.max_rss,
        )
        control.probes.pools["parallel"] = pool.pids
        in_flight: dict[int, Source] = {}
        pending_results: list[ImageResult] = []
        try:
            while not control.abandoned:
                while pool.idle():
                    source = feeder.admit()
                    if source is None:
                        break
                    pool.submit(source.index, source)
                    in_flight[source.index] = source
                # Handed over once the workers have their next images, so
                # none waits while the caller records these results.
                yield from pending_results
                pending_results.clear()
                if feeder.finished:
                    return
                for completion in pool.poll(POLL_SECONDS):
                    result = result_of(in_flight.pop(completion.task_id), completion)
                    if feeder.complete(result):
                        pending_results.append(result)
            yield from pending_results
        finally:
            if control.abandoned:
                pool.terminate()
            else:
                pool.close()
