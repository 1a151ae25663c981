"""Pipelined model: each group of stages has its own workers.

    reader threads ──▶ [render queue] ──▶ render processes ──▶ [store queue]
        load, describe      bounded         decode, resize,        bounded
                                            encode
                      ──▶ writer threads ──▶ results ──▶ catalog (one writer)
                            store

Different images are in different stages at once. The queues are bounded,
so when a stage falls behind, the stages before it wait: readers block on a
full render queue, and the feeder admits no source while the readers are
blocked. Memory is bounded by the queue sizes, whatever the input count.
Render processes receive a reference (path, hash, header), re-read the file
from the page cache and check its hash; pixels never cross a process
boundary.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from imgflow.engines import vips
from imgflow.executors.base import Feeder, RunControl
from imgflow.executors.parallel import POLL_SECONDS, default_workers, result_of
from imgflow.executors.pool import WorkerPool
from imgflow.pipeline import Described, Loaded, Pipeline, failure
from imgflow.records import ImageResult, Source
from imgflow.stages import ingest, metadata, store, transform, validate
from imgflow.stages.transform import Rendered

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long an idle render dispatcher waits for a pool result when more
# work may be queued behind it, in seconds.
DISPATCH_POLL_SECONDS = 0.005

_pipeline: Pipeline | None = None


def start_render_worker(pipeline: Pipeline) -> None:
    global _pipeline
    _pipeline = pipeline
    vips.configure_worker(threads=1)


def render_in_worker(loaded: Loaded) -> list[Rendered] | ImageResult:
    """Render one image by reference; a failure comes back as its result."""
    assert _pipeline is not None, "worker started without a pipeline"
    stage = ingest.STAGE
    try:
        data = _pipeline.read_verified(loaded)
        stage = transform.STAGE
        return _pipeline.render(loaded, data)
    except Exception as exc:  # noqa: BLE001 - reported as the image's result
        return failure(loaded.source, exc, stage, loaded.started)


def _get(source: queue.Queue[T], timeout: float = POLL_SECONDS) -> T | None:
    try:
        return source.get(timeout=timeout)
    except queue.Empty:
        return None


class _Stages:
    """The threads, queues and pool of one pipelined run."""

    def __init__(
        self,
        pipeline: Pipeline,
        feeder: Feeder,
        control: RunControl,
        pool_factory: Callable[[], WorkerPool],
        *,
        queue_size: int,
    ) -> None:
        self.pipeline = pipeline
        self.feeder = feeder
        self.control = control
        self.pool_factory = pool_factory
        self.to_render: queue.Queue[Described] = queue.Queue(queue_size)
        self.to_store: queue.Queue[tuple[Described, list[Rendered]]] = queue.Queue(
            queue_size
        )
        self.results: queue.Queue[ImageResult] = queue.Queue()
        self.closing = threading.Event()
        self.readers_done = threading.Event()

    def _put(self, target: queue.Queue[Any], item: Any) -> bool:
        """Put with backpressure; give up only when the run is closing."""
        while not self.closing.is_set():
            try:
                target.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def read_loop(self) -> None:
        while not self.closing.is_set():
            source = self.feeder.admit(wait=POLL_SECONDS)
            if source is None:
                if self.feeder.drained:
                    return
                continue
            described = self._load(source)
            if described is not None:
                self._put(self.to_render, described)

    def _load(self, source: Source) -> Described | None:
        stage = ingest.STAGE
        loaded: Loaded | None = None
        try:
            data = self.pipeline.read(source)
            stage = validate.STAGE
            loaded = self.pipeline.load(source, data)
            stage = metadata.STAGE
            return self.pipeline.describe(loaded, data)
        except Exception as exc:  # noqa: BLE001 - becomes the image's result
            started = loaded.started if loaded else 0.0
            self.results.put(failure(source, exc, stage, started))
            return None

    def dispatch_loop(self) -> None:
        pool = self.pool_factory()
        in_pool: dict[int, Described] = {}
        try:
            while not self.closing.is_set():
                while pool.idle():
                    wait = POLL_SECONDS if not in_pool else 0.0
                    described = _get(self.to_render, wait) if wait else self._take()
                    if described is None:
                        break
                    pool.submit(described.loaded.source.index, described.loaded)
                    in_pool[described.loaded.source.index] = described
                if not in_pool:
                    continue
                timeout = DISPATCH_POLL_SECONDS if pool.idle() else POLL_SECONDS
                for completion in pool.poll(timeout):
                    self._route(in_pool.pop(completion.task_id), completion)
        finally:
            if self.control.abandoned:
                pool.terminate()
            else:
                pool.close()

    def _take(self) -> Described | None:
        try:
            return self.to_render.get_nowait()
        except queue.Empty:
            return None

    def _route(self, described: Described, completion: Any) -> None:
        value = completion.value
        source = described.loaded.source
        if isinstance(value, list):
            self._put(self.to_store, (described, value))
        elif isinstance(value, ImageResult):
            self.results.put(value)
        else:
            self.results.put(result_of(source, completion))

    def write_loop(self) -> None:
        while not self.closing.is_set():
            item = _get(self.to_store)
            if item is None:
                continue
            described, rendered = item
            try:
                result = self.pipeline.store(described, rendered)
            except Exception as exc:  # noqa: BLE001 - becomes the image's result
                loaded = described.loaded
                result = failure(loaded.source, exc, store.STAGE, loaded.started)
            self.results.put(result)


class PipelinedExecutor:
    name = "pipelined"

    def __init__(
        self,
        workers: int | None = None,
        *,
        readers: int = 2,
        writers: int = 2,
        queue_size: int = 8,
        time_limit: float | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.workers = workers or default_workers()
        self.readers = readers
        self.writers = writers
        self.queue_size = queue_size
        self.time_limit = time_limit

    def _pool(self, pipeline: Pipeline) -> WorkerPool:
        return WorkerPool(
            self.workers,
            render_in_worker,
            initializer=start_render_worker,
            initargs=(pipeline,),
            task_timeout=self.time_limit,
            name="render",
        )

    def run(
        self, pipeline: Pipeline, sources: Iterable[Source], control: RunControl
    ) -> Iterator[ImageResult]:
        feeder = Feeder(sources, control)
        stages = _Stages(
            pipeline,
            feeder,
            control,
            lambda: self._pool(pipeline),
            queue_size=self.queue_size,
        )
        threads = [
            threading.Thread(
                target=stages.read_loop, name=f"imgflow-reader-{i}", daemon=True
            )
            for i in range(self.readers)
        ]
        threads.append(
            threading.Thread(
                target=stages.dispatch_loop, name="imgflow-dispatch", daemon=True
            )
        )
        threads += [
            threading.Thread(
                target=stages.write_loop, name=f"imgflow-writer-{i}", daemon=True
            )
            for i in range(self.writers)
        ]
        for thread in threads:
            thread.start()
        try:
            while not control.abandoned:
                result = _get(stages.results)
                if result is not None:
                    feeder.complete(result.source)
                    yield result
                elif feeder.finished and stages.results.empty():
                    return
        finally:
            stages.closing.set()
            for thread in threads:
                thread.join()
