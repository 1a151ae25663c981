"""Parallel model: a pool of worker processes, each taking whole images.

Workers are started with `spawn`, because libvips keeps threads that a
forked child would inherit in an undefined state. Each worker runs libvips
with one thread: with one process per core, threads inside an image only
compete with the other workers. At most `2 x workers` images are in flight,
so a folder of any size is read lazily.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from imgflow.engines import vips
from imgflow.errors import Reason, Status
from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source

log = logging.getLogger(__name__)

_pipeline: Pipeline | None = None


def _start_worker(pipeline: Pipeline) -> None:
    global _pipeline
    _pipeline = pipeline
    vips.configure_worker(threads=1)


def _process(source: Source) -> ImageResult:
    assert _pipeline is not None, "worker started without a pipeline"
    return _pipeline.process(source)


def default_workers() -> int:
    return (
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count() or 1
    )


class ParallelExecutor:
    name = "parallel"

    def __init__(
        self, workers: int | None = None, *, in_flight_per_worker: int = 2
    ) -> None:
        self.workers = workers or default_workers()
        self.window = self.workers * in_flight_per_worker

    def _pool(self, pipeline: Pipeline) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(pipeline,),
        )

    def run(
        self, pipeline: Pipeline, sources: Iterable[Source]
    ) -> Iterator[ImageResult]:
        pending = iter(sources)
        in_flight: dict[Future[ImageResult], Source] = {}
        pool = self._pool(pipeline)
        try:
            exhausted = False
            while True:
                while not exhausted and len(in_flight) < self.window:
                    source = next(pending, None)
                    if source is None:
                        exhausted = True
                        break
                    in_flight[pool.submit(_process, source)] = source
                if not in_flight:
                    return
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                broken = False
                for future in sorted(done, key=lambda f: in_flight[f].index):
                    source = in_flight.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        broken = True
                        yield _lost(source)
                if broken:
                    # Every future of a broken pool fails; report them and start afresh.
                    for future, source in sorted(
                        in_flight.items(), key=lambda i: i[1].index
                    ):
                        future.cancel()
                        yield _lost(source)
                    in_flight.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = self._pool(pipeline)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _lost(source: Source) -> ImageResult:
    log.error("worker process died while processing %s", source.path)
    return ImageResult(
        source=source,
        status=Status.FAILED,
        stage="worker",
        reason=Reason.WORKER_LOST,
        message="the worker process died (crash, kill or out of memory) during this image",
    )
