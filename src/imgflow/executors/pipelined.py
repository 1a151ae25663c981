"""Pipelined model: each group of stages has its own workers.

    reader threads ──▶ [render queue] ──▶ dispatcher ──▶ render lanes ──▶ [store queue]
     load, describe       bounded          routes and     process pools      bounded
                                           batches        decode, resize,
                                                          encode
                   ──▶ writer threads ──▶ results ──▶ catalog (one writer)
                         store

Different images are in different stages at once. The queues are bounded,
so when a stage falls behind, the stages before it wait: readers block on a
full render queue, and the feeder admits no source while the readers are
blocked. Memory is bounded by the queue sizes, whatever the input count.

A lane is a pool of render processes with an engine and a batch size. The
pipelined model has one lane; the hybrid model routes each image to one of
several. Lanes receive references (path, hash, header): a worker re-reads
the file from the page cache and checks its hash, so pixels never cross a
process boundary.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, TypeVar

from imgflow.engines import vips
from imgflow.executors.base import Feeder, RunControl
from imgflow.executors.parallel import POLL_SECONDS, default_workers, result_of
from imgflow.executors.pool import Completion, Outcome, WorkerPool
from imgflow.pipeline import Described, Loaded, Pipeline, failure
from imgflow.records import ImageResult, Source
from imgflow.stages import ingest, metadata, store, transform, validate
from imgflow.stages.transform import Rendered

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long the dispatcher waits for a render result while a worker is
# idle and more work may arrive in the render queue, in seconds.
DISPATCH_POLL_SECONDS = 0.005


@dataclass(frozen=True, slots=True)
class Lane:
    """A pool of render processes and how it takes work."""

    name: str
    workers: int
    engine: str = "vips"
    batch_size: int = 1


RenderOutcome = list[Rendered] | ImageResult

_pipeline: Pipeline | None = None
_engine = "vips"


def start_render_worker(pipeline: Pipeline, engine: str) -> None:
    global _pipeline, _engine
    _pipeline = pipeline
    _engine = engine
    vips.configure_worker(threads=1)


def _render_one(pipeline: Pipeline, loaded: Loaded) -> RenderOutcome:
    stage = ingest.STAGE
    try:
        data = pipeline.read_verified(loaded)
        stage = transform.STAGE
        return pipeline.render(loaded, data, engine=_engine)
    except Exception as exc:  # noqa: BLE001 - reported as the image's result
        return failure(loaded.source, exc, stage, loaded.started)


def render_batch_in_worker(batch: list[Loaded]) -> list[RenderOutcome]:
    """Render a batch by reference; a failure comes back as that image's result."""
    assert _pipeline is not None, "worker started without a pipeline"
    return [_render_one(_pipeline, loaded) for loaded in batch]


def _get(source: queue.Queue[T], timeout: float = POLL_SECONDS) -> T | None:
    try:
        return source.get(timeout=timeout)
    except queue.Empty:
        return None


class _Stages:
    """The threads, queues and pools of one run."""

    def __init__(
        self,
        pipeline: Pipeline,
        feeder: Feeder,
        control: RunControl,
        lanes: list[Lane],
        route: Callable[[Described], int],
        *,
        queue_size: int,
        time_limit: float | None,
    ) -> None:
        self.pipeline = pipeline
        self.feeder = feeder
        self.control = control
        self.lanes = lanes
        self.route = route
        self.time_limit = time_limit
        self.to_render: queue.Queue[Described] = queue.Queue(queue_size)
        self.to_store: queue.Queue[tuple[Described, list[Rendered]]] = queue.Queue(
            queue_size
        )
        self.results: queue.Queue[ImageResult] = queue.Queue()
        self.closing = threading.Event()

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

    def dispatch_loop(self) -> None:
        pools = [self._pool(lane) for lane in self.lanes]
        try:
            _Dispatcher(self, pools).run()
        finally:
            for pool in pools:
                if self.control.abandoned:
                    pool.terminate()
                else:
                    pool.close()

    def _pool(self, lane: Lane) -> WorkerPool:
        return WorkerPool(
            lane.workers,
            render_batch_in_worker,
            initializer=start_render_worker,
            initargs=(self.pipeline, lane.engine),
            task_timeout=self.time_limit * lane.batch_size if self.time_limit else None,
            name=lane.name,
        )


class _Dispatcher:
    """Routes described images to lanes, batches them and collects results."""

    def __init__(self, stages: _Stages, pools: list[WorkerPool]) -> None:
        self.stages = stages
        self.pools = pools
        self.pending: list[list[Described]] = [[] for _ in pools]
        self.running: list[dict[int, list[Described]]] = [{} for _ in pools]
        self.batch_ids = 0

    def _busy(self) -> bool:
        return any(self.running) or any(self.pending)

    def _capacity(self, lane: int) -> int:
        spec = self.stages.lanes[lane]
        return spec.batch_size * spec.workers

    def _fill(self) -> None:
        """Move described images from the render queue into lane backlogs.

        Stops while any backlog is full: the next image's lane is unknown
        until it is taken, and a full backlog must not grow.
        """
        while all(
            len(backlog) < self._capacity(lane)
            for lane, backlog in enumerate(self.pending)
        ):
            wait = 0.0 if self._busy() else POLL_SECONDS
            described = _get(self.stages.to_render, wait) if wait else self._take()
            if described is None:
                return
            self.pending[self.stages.route(described)].append(described)

    def _take(self) -> Described | None:
        try:
            return self.stages.to_render.get_nowait()
        except queue.Empty:
            return None

    def _submit(self) -> None:
        queue_empty = self.stages.to_render.empty()
        for lane, pool in enumerate(self.pools):
            size = self.stages.lanes[lane].batch_size
            backlog = self.pending[lane]
            # A partial batch goes out only when nothing else is waiting,
            # so batching never adds latency to an idle run.
            while pool.idle() and (len(backlog) >= size or (backlog and queue_empty)):
                batch, self.pending[lane] = backlog[:size], backlog[size:]
                backlog = self.pending[lane]
                self.batch_ids += 1
                pool.submit(self.batch_ids, [described.loaded for described in batch])
                self.running[lane][self.batch_ids] = batch

    def _wait(self) -> None:
        watched: list[Any] = []
        timeout = POLL_SECONDS
        for pool in self.pools:
            watched += pool.waitables()
            remaining = pool.seconds_to_deadline()
            if remaining is not None:
                timeout = min(timeout, remaining)
            if pool.idle():
                timeout = min(timeout, DISPATCH_POLL_SECONDS)
        wait(watched, timeout)

    def _collect(self) -> None:
        for lane, pool in enumerate(self.pools):
            for completion in pool.poll(0):
                batch = self.running[lane].pop(completion.task_id)
                self._deliver(batch, completion)

    def _deliver(self, batch: list[Described], completion: Completion) -> None:
        if completion.outcome is not Outcome.OK:
            # The whole batch shared the lost worker, timed out or failed.
            for described in batch:
                self.stages.results.put(result_of(described.loaded.source, completion))
            return
        for described, outcome in zip(batch, completion.value, strict=True):
            if isinstance(outcome, ImageResult):
                self.stages.results.put(outcome)
            else:
                self.stages._put(self.stages.to_store, (described, outcome))

    def run(self) -> None:
        while not self.stages.closing.is_set():
            self._fill()
            self._submit()
            if not any(self.running):
                continue
            self._wait()
            self._collect()


class PipelinedExecutor:
    """Stages on their own threads and processes; one vips render lane."""

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

    def lanes(
        self, pipeline: Pipeline
    ) -> tuple[list[Lane], Callable[[Described], int]]:
        """Return the render lanes and the function that picks one per image."""
        return [Lane("render", self.workers)], lambda _described: 0

    def run(
        self, pipeline: Pipeline, sources: Iterable[Source], control: RunControl
    ) -> Iterator[ImageResult]:
        feeder = Feeder(sources, control)
        lanes, route = self.lanes(pipeline)
        stages = _Stages(
            pipeline,
            feeder,
            control,
            lanes,
            route,
            queue_size=self.queue_size,
            time_limit=self.time_limit,
        )
        roles = [(stages.read_loop, f"reader-{i}") for i in range(self.readers)]
        roles.append((stages.dispatch_loop, "dispatch"))
        roles += [(stages.write_loop, f"writer-{i}") for i in range(self.writers)]
        threads = [
            threading.Thread(target=target, name=f"imgflow-{role}", daemon=True)
            for target, role in roles
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
