"""Pipelined model: each group of stages has its own workers.

    reader threads ──▶ [render queue] ──▶ render processes ──▶ [store queue]
     load, describe       bounded          decode, resize,        bounded
                                           encode
                   ──▶ writer threads ──▶ results ──▶ catalog (one writer)
                         store

Different images are in different stages at once. The queues are bounded,
so when a stage falls behind, the stages before it wait: readers block on a
full render queue, and the feeder admits no source while the readers are
blocked. Memory is bounded by the queue sizes, whatever the input count.
Render processes receive a reference (path, hash, header), re-read the
file from the page cache and check its hash, so pixels never cross a
process boundary.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from imgflow.errors import Reason, StageFailed
from imgflow.executors import worker
from imgflow.executors.base import Feeder, RunControl
from imgflow.executors.parallel import POLL_SECONDS, default_workers, result_of
from imgflow.executors.pool import Completion, Outcome, WorkerPool
from imgflow.pipeline import Described, Loaded, Pipeline, StageClock, failure
from imgflow.records import ImageResult, Source
from imgflow.stages import ingest, metadata, store, transform, validate
from imgflow.stages.transform import Rendered

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long the dispatcher waits for a render result while a worker is
# idle and more work may arrive in the render queue, in seconds.
DISPATCH_POLL_SECONDS = 0.005


# The variants and the image's stage timings, or the image's final result.
RenderOutcome = tuple[list[Rendered], dict[str, float]] | ImageResult


def render_in_worker(loaded: Loaded) -> RenderOutcome:
    """Render one image by reference; a failure comes back as its result."""
    pipeline = worker.pipeline()
    clock = StageClock(loaded.timings)
    stage = ingest.STAGE
    try:
        data = pipeline.read_verified(loaded)
        clock.lap(stage)
        stage = transform.STAGE
        rendered = pipeline.render(loaded, data)
        clock.lap(stage)
    except Exception as exc:  # noqa: BLE001 - reported as the image's result
        return failure(loaded.source, exc, stage, loaded.started, clock.timings)
    return rendered, clock.timings


def _get(source: queue.Queue[T], timeout: float = POLL_SECONDS) -> T | None:
    try:
        return source.get(timeout=timeout)
    except queue.Empty:
        return None


def _take(source: queue.Queue[T]) -> T | None:
    try:
        return source.get_nowait()
    except queue.Empty:
        return None


@dataclass(slots=True)
class _Task:
    """The image a stage thread is working on, and since when."""

    source: Source
    stage: str
    started: float = field(default_factory=time.monotonic)
    loaded: Loaded | None = None


class _Stages:
    """The threads, queues and pools of one run.

    With a time limit, a reader or writer thread that spends longer than
    the limit on one image is given up: the image fails as timed out (and
    may be retried), and a new thread takes the role. A thread cannot be
    killed, so the stuck one lives on until its call returns, and then
    exits without delivering anything.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        feeder: Feeder,
        control: RunControl,
        pool_factory: Callable[[], WorkerPool],
        *,
        queue_size: int,
        time_limit: float | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.time_limit = time_limit
        self.feeder = feeder
        self.control = control
        self.pool_factory = pool_factory
        self.to_render: queue.Queue[Described] = queue.Queue(queue_size)
        self.to_store: queue.Queue[tuple[Described, list[Rendered]]] = queue.Queue(
            queue_size
        )
        self.results: queue.Queue[ImageResult] = queue.Queue()
        self.closing = threading.Event()
        self.threads: list[threading.Thread] = []
        self._tasks_lock = threading.Lock()
        self._tasks: dict[threading.Thread, _Task] = {}
        self._given_up: set[threading.Thread] = set()
        control.probes.queues.update(
            render=self.to_render.qsize,
            store=self.to_store.qsize,
            results=self.results.qsize,
        )

    def _put(self, target: queue.Queue[Any], item: Any) -> bool:
        """Put with backpressure; give up only when the run is closing."""
        while not self.closing.is_set():
            try:
                target.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def start_thread(self, target: Callable[[], None], role: str) -> None:
        thread = threading.Thread(target=target, name=f"imgflow-{role}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _begin(self, source: Source, stage: str) -> _Task:
        task = _Task(source, stage)
        with self._tasks_lock:
            self._tasks[threading.current_thread()] = task
        return task

    def _end(self) -> bool:
        """Finish this thread's task; False when it was given up meanwhile."""
        me = threading.current_thread()
        with self._tasks_lock:
            self._tasks.pop(me, None)
            return me not in self._given_up

    def _deliver_result(self, result: ImageResult) -> None:
        if self._end():
            self.results.put(result)

    def expire_stuck(self) -> None:
        """Give up the threads that passed the time limit on one image."""
        if self.time_limit is None:
            return
        now = time.monotonic()
        with self._tasks_lock:
            stuck = [
                (thread, task)
                for thread, task in self._tasks.items()
                if now - task.started >= self.time_limit
            ]
            for thread, _task in stuck:
                del self._tasks[thread]
                self._given_up.add(thread)
        for thread, task in stuck:
            log.error(
                "%s: %s took longer than the time limit of %.1f s; "
                "its thread %s is given up and replaced",
                task.source.path,
                task.stage,
                self.time_limit,
                thread.name,
            )
            started = task.loaded.started if task.loaded else time.perf_counter()
            result = failure(
                task.source,
                StageFailed(
                    Reason.TIMED_OUT,
                    f"{task.stage} took longer than the time limit of "
                    f"{self.time_limit:g} s",
                    stage=task.stage,
                ),
                task.stage,
                started,
            )
            self.results.put(result)
            role = thread.name.removeprefix("imgflow-")
            target = self.read_loop if role.startswith("reader") else self.write_loop
            self.start_thread(target, f"{role}+")

    def is_given_up(self, thread: threading.Thread) -> bool:
        with self._tasks_lock:
            return thread in self._given_up

    def _given_up_here(self) -> bool:
        return self.is_given_up(threading.current_thread())

    def read_loop(self) -> None:
        while not self.closing.is_set() and not self._given_up_here():
            source = self.feeder.admit(wait=POLL_SECONDS)
            if source is None:
                # Not `drained`: a failed image may still come back for a retry.
                if self.feeder.finished:
                    return
                continue
            described = self._load(source)
            if described is not None and self._end():
                self._put(self.to_render, described)

    def _load(self, source: Source) -> Described | None:
        task = self._begin(source, ingest.STAGE)
        started = time.perf_counter()
        try:
            data = self.pipeline.read(source)
            task.stage = validate.STAGE
            loaded = self.pipeline.load(source, data)
            task.stage = metadata.STAGE
            return self.pipeline.describe(loaded, data)
        except Exception as exc:  # noqa: BLE001 - becomes the image's result
            self._deliver_result(failure(source, exc, task.stage, started))
            return None

    def write_loop(self) -> None:
        while not self.closing.is_set() and not self._given_up_here():
            item = _get(self.to_store)
            if item is None:
                continue
            described, rendered = item
            loaded = described.loaded
            task = self._begin(loaded.source, store.STAGE)
            task.loaded = loaded
            try:
                result = self.pipeline.store(described, rendered)
            except Exception as exc:  # noqa: BLE001 - becomes the image's result
                result = failure(loaded.source, exc, store.STAGE, loaded.started)
            self._deliver_result(result)

    def dispatch_loop(self) -> None:
        """Feed the render pool from the render queue and route its results."""
        pool = self.pool_factory()
        self.control.probes.pools["render"] = pool.pids
        running: dict[int, Described] = {}
        try:
            while not self.closing.is_set():
                while pool.idle():
                    wait = 0.0 if running else POLL_SECONDS
                    described = (
                        _get(self.to_render, wait) if wait else _take(self.to_render)
                    )
                    if described is None:
                        break
                    index = described.loaded.source.index
                    pool.submit(index, described.loaded)
                    running[index] = described
                if not running:
                    if not pool.idle():
                        pool.poll(DISPATCH_POLL_SECONDS)  # workers still starting
                    continue
                # While a worker is idle, wake often to hand it new work.
                timeout = DISPATCH_POLL_SECONDS if pool.idle() else POLL_SECONDS
                for completion in pool.poll(timeout):
                    self._deliver(running.pop(completion.task_id), completion)
        finally:
            if self.control.abandoned:
                pool.terminate()
            else:
                pool.close()

    def _deliver(self, described: Described, completion: Completion) -> None:
        if completion.outcome is not Outcome.OK:
            self.results.put(result_of(described.loaded.source, completion))
        elif isinstance(completion.value, ImageResult):
            self.results.put(completion.value)
        else:
            rendered, timings = completion.value
            described.loaded.timings.update(timings)
            self._put(self.to_store, (described, rendered))


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
        max_rss: int | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.workers = workers or default_workers()
        self.readers = readers
        self.writers = writers
        self.queue_size = queue_size
        self.time_limit = time_limit
        self.max_rss = max_rss

    def _pool(self, pipeline: Pipeline) -> WorkerPool:
        return WorkerPool(
            self.workers,
            render_in_worker,
            initializer=worker.start,
            initargs=(pipeline,),
            task_timeout=self.time_limit,
            max_rss=self.max_rss,
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
            time_limit=self.time_limit,
        )
        for i in range(self.readers):
            stages.start_thread(stages.read_loop, f"reader-{i}")
        stages.start_thread(stages.dispatch_loop, "dispatch")
        for i in range(self.writers):
            stages.start_thread(stages.write_loop, f"writer-{i}")
        try:
            while not control.abandoned:
                stages.expire_stuck()
                result = _get(stages.results)
                if result is not None:
                    if feeder.complete(result):
                        yield result
                elif feeder.finished and stages.results.empty():
                    return
        finally:
            stages.closing.set()
            for thread in stages.threads:
                if not stages.is_given_up(thread):
                    thread.join()
