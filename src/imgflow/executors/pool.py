"""A process pool that tracks which task each worker is running.

`concurrent.futures.ProcessPoolExecutor` fails every pending future when one
worker dies, and cannot stop a task stuck in C code. Here each worker has its
own pipe and runs one task at a time, so the parent always tracks whose task
was lost: a worker that crashes, is killed or passes its time limit costs
only its own task, and a fresh worker takes its place.

Starting a worker with `spawn` costs a fresh interpreter and its imports,
about a third of a second here, which is most of a short run. A command
therefore calls `reserve_workers` early, while its process still has one
thread: those workers are forked in milliseconds, sharing the imports, and
pools take them before spawning any. Forking later is unsafe, because
libvips keeps threads that a forked child would inherit in an undefined
state. Every worker receives its task function and set-up as its first message,
so a worker forked early serves whichever pool starts first. Workers ignore
SIGINT: the parent decides how a run stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import Connection, wait
from typing import Any

from imgflow.telemetry.logs import (
    LogSettings,
    configure_worker_logging,
    current_log_settings,
)

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class Outcome(StrEnum):
    OK = "ok"
    ERROR = "error"
    LOST = "lost"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class Completion:
    """The end of one task: its value, or why there is none."""

    task_id: Any
    outcome: Outcome
    value: Any = None
    message: str = ""
    # For a lost or timed-out task, how long its worker had been running it.
    seconds: float = 0.0


def resident_bytes() -> int | None:
    """Return this process's resident memory now (Linux), or None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            resident_pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class _Setup:
    """The set-up a worker receives as its first message, before any task."""

    function: Callable[[Any], Any]
    initializer: Callable[..., None] | None
    initargs: Sequence[Any]
    max_rss: int | None
    log_settings: LogSettings | None
    name: str


def _worker_main(connection: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker would otherwise inherit the parent's stop handler.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Forked while the parent held them back.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    try:
        setup: _Setup | None = connection.recv()
    except (EOFError, OSError):
        return
    if setup is None:
        return  # A reserved worker that no pool took.
    multiprocessing.current_process().name = setup.name
    if setup.log_settings is not None:
        configure_worker_logging(setup.log_settings)
    if setup.initializer is not None:
        setup.initializer(*setup.initargs)
    function, max_rss = setup.function, setup.max_rss
    # Tells the parent that start-up is over: a task's time limit starts
    # when a ready worker takes it, so start-up never counts against it.
    connection.send(None)
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        task_id, argument = message
        try:
            value: tuple[bool, Any] = (True, function(argument))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            value = (False, f"{type(exc).__name__}: {exc}")
        rss = resident_bytes() if max_rss is not None else None
        # Between tasks, so no image is lost: the parent starts a fresh worker.
        retiring = rss is not None and max_rss is not None and rss > max_rss
        try:
            connection.send((task_id, *value, retiring))
        except (BrokenPipeError, OSError):
            return  # The parent has gone, so the result has no reader.
        if retiring:
            return


# glibc gives each thread that allocates its own malloc arena, and libvips'
# threads leave them holding freed memory: on 12 MP photos this cut the peak
# RSS of a worker from about 148 MB to 114 MB. A value set by the user wins.
_ARENA_VARIABLE = "MALLOC_ARENA_MAX"
_ARENA_LIMIT = 2
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


@contextlib.contextmanager
def _worker_environment() -> Iterator[None]:
    """Set the variables a spawned worker reads at start-up, then restore them."""
    added = _ARENA_VARIABLE not in os.environ
    if added:
        os.environ[_ARENA_VARIABLE] = str(_ARENA_LIMIT)
    try:
        yield
    finally:
        if added:
            os.environ.pop(_ARENA_VARIABLE, None)


def _limit_malloc_arenas() -> None:
    """Apply the arena limit in a forked worker, whose malloc is already set up."""
    if _ARENA_VARIABLE in os.environ:
        return  # glibc read the user's value when the parent started.
    # The process's own symbols include the C library's.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, _ARENA_LIMIT)


# Workers forked by `reserve_workers`, each waiting for its set-up message.
_reserved: list[tuple[Any, Connection]] = []


def _forking_is_safe() -> bool:
    """True on Linux while this process runs a single thread.

    Counts the kernel's threads, so threads started by libvips or any other
    C library count too, not only those of the `threading` module.
    """
    if sys.platform != "linux":
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _reserved_worker_main(connection: Connection, parent_end: Connection) -> None:
    # The parent's end of this worker's pipe, and those of workers forked
    # earlier, came along with the fork. Holding them would keep every one
    # of these workers from reading end-of-file when the parent exits.
    parent_end.close()
    for _, earlier in _reserved:
        earlier.close()
    _limit_malloc_arenas()
    _worker_main(connection)


def reserve_workers(count: int) -> int:
    """Fork `count` workers now for the pools this process creates later.

    Call it once the imports the workers need are done and before any thread
    starts or any file a worker should not hold is opened. Returns how many
    were forked: none where forking is not safe, and pools then spawn
    theirs. `release_reserved_workers` ends those no pool took.
    """
    if count < 1:
        return 0
    if not _forking_is_safe():
        log.debug("not forking workers ahead: this process runs several threads")
        return 0
    # Objects that exist now are left out of later collections, so a worker's
    # garbage collector does not write to, and so copy, the pages it shares.
    gc.freeze()
    context = multiprocessing.get_context("fork")
    # A stop signal during a fork would interrupt the fork handlers, which
    # swallow the KeyboardInterrupt. Held until the forks are done, it is
    # delivered then; each worker sets its own handlers and unblocks them.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        _fork_reserved(context, count)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    log.debug("forked %d workers ahead of their pool", count)
    return count


def _fork_reserved(context: Any, count: int) -> None:
    for _ in range(count):
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=_reserved_worker_main,
            args=(child_end, parent_end),
            name="imgflow-reserved",
            daemon=True,
        )
        process.start()
        child_end.close()
        _reserved.append((process, parent_end))


def reserved_count() -> int:
    """Return how many forked workers wait for a pool to take them."""
    return len(_reserved)


def release_reserved_workers() -> None:
    """End the reserved workers that no pool took."""
    while _reserved:
        process, connection = _reserved.pop()
        connection.close()  # The worker reads end-of-file and exits.
        process.join(STOP_GRACE_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()


@contextlib.contextmanager
def reserved_workers(count: int) -> Iterator[int]:
    """Reserve `count` forked workers for the block; release the unused ones."""
    try:
        yield reserve_workers(count)
    finally:
        release_reserved_workers()


@dataclass(slots=True)
class _Worker:
    process: Any
    connection: Connection
    task_id: Any = None
    started: float = 0.0
    timeout: float | None = None
    ready: bool = False

    @property
    def busy(self) -> bool:
        return self.task_id is not None

    @property
    def available(self) -> bool:
        return self.ready and not self.busy


def _exit_description(process: Any) -> str:
    code = process.exitcode
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class WorkerPool:
    """A fixed number of worker processes running `function` on one task each.

    Drive it from one thread: `submit` while `idle()` is non-zero, then
    `poll` for completions. A worker whose resident memory passes `max_rss`
    bytes after a task exits and is replaced before its next task.
    """

    def __init__(
        self,
        size: int,
        function: Callable[[Any], Any],
        *,
        initializer: Callable[..., None] | None = None,
        initargs: Sequence[Any] = (),
        task_timeout: float | None = None,
        max_rss: int | None = None,
        name: str = "worker",
    ) -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one worker, got {size}")
        self._context = multiprocessing.get_context("spawn")
        self._function = function
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._task_timeout = task_timeout
        self._max_rss = max_rss
        self._name = name
        self._started = 0
        self._workers = [self._start() for _ in range(size)]

    def _start(self) -> _Worker:
        self._started += 1
        name = f"imgflow-{self._name}-{self._started}"
        if _reserved:
            process, parent_end = _reserved.pop(0)
            process.name = name
        else:
            parent_end, child_end = self._context.Pipe()
            process = self._context.Process(
                target=_worker_main, args=(child_end,), name=name, daemon=True
            )
            with _worker_environment():
                process.start()
            child_end.close()
        setup = _Setup(
            function=self._function,
            initializer=self._initializer,
            initargs=self._initargs,
            max_rss=self._max_rss,
            log_settings=current_log_settings(),
            name=name,
        )
        try:
            parent_end.send(setup)
        except (BrokenPipeError, OSError):
            pass  # The worker died already, and poll() replaces it.
        return _Worker(process=process, connection=parent_end)

    @property
    def name(self) -> str:
        return self._name

    @property
    def size(self) -> int:
        return len(self._workers)

    def idle(self) -> int:
        """Count the workers that have started up and have no task."""
        return sum(1 for worker in self._workers if worker.available)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Wait until every worker has started up; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.idle() + self.busy() < self.size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.poll(min(remaining, 0.1))
        return True

    def busy(self) -> int:
        return sum(1 for worker in self._workers if worker.busy)

    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers]

    def submit(
        self, task_id: Any, argument: Any, *, timeout: float | None = None
    ) -> None:
        """Hand one task to an idle worker; raises RuntimeError if none is idle.

        `timeout` replaces the pool's time limit for this task.
        """
        for worker in self._workers:
            if worker.available:
                worker.connection.send((task_id, argument))
                worker.task_id = task_id
                worker.started = time.monotonic()
                worker.timeout = timeout if timeout is not None else self._task_timeout
                return
        raise RuntimeError("no idle worker: poll() for completions or start-up first")

    def _replace(self, worker: _Worker) -> None:
        worker.connection.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        self._workers[self._workers.index(worker)] = self._start()

    def _receive(self, worker: _Worker) -> Completion | None:
        try:
            message = worker.connection.recv()
        except (EOFError, OSError):
            return None
        if message is None:
            worker.ready = True
            return None
        task_id, ok, value, retiring = message
        worker.task_id = None
        if retiring:
            log.info(
                "recycling worker %d: resident memory over the limit",
                worker.process.pid,
            )
            self._replace(worker)
        if ok:
            return Completion(task_id, Outcome.OK, value)
        return Completion(task_id, Outcome.ERROR, message=value)

    def waitables(self) -> list[Any]:
        """Objects that become ready when a task of this pool may have ended."""
        watched: list[Any] = []
        for worker in self._workers:
            watched.append(worker.process.sentinel)
            if worker.busy or not worker.ready:
                watched.append(worker.connection)
        return watched

    def seconds_to_deadline(self) -> float | None:
        """Seconds until the oldest running task passes its time limit."""
        deadline = self._next_deadline()
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _next_deadline(self) -> float | None:
        deadlines = [
            worker.started + worker.timeout
            for worker in self._workers
            if worker.busy and worker.timeout is not None
        ]
        return min(deadlines) if deadlines else None

    def poll(self, timeout: float | None = None) -> list[Completion]:
        """Wait up to `timeout` seconds and return the tasks that ended."""
        remaining = self.seconds_to_deadline()
        if remaining is not None:
            timeout = remaining if timeout is None else min(timeout, remaining)
        ready = set(wait(self.waitables(), timeout))

        completions = []
        for worker in list(self._workers):
            if worker.connection in ready:
                completion = self._receive(worker)
                if completion is not None:
                    completions.append(completion)
                    continue
            if worker.process.sentinel in ready or not worker.process.is_alive():
                worker.process.join()
                if worker.busy:
                    message = f"worker process {_exit_description(worker.process)}"
                    # Callers log each loss with the image it cost.
                    log.debug("%s while running task %s", message, worker.task_id)
                    completions.append(
                        Completion(
                            worker.task_id,
                            Outcome.LOST,
                            message=message,
                            seconds=time.monotonic() - worker.started,
                        )
                    )
                self._replace(worker)
        completions.extend(self._expire())
        return completions

    def _expire(self) -> list[Completion]:
        now = time.monotonic()
        expired = []
        for worker in list(self._workers):
            timeout = worker.timeout
            if worker.busy and timeout is not None and now - worker.started >= timeout:
                message = f"no result within {timeout:g} s; worker process ended"
                log.debug("task %s: %s", worker.task_id, message)
                expired.append(
                    Completion(
                        worker.task_id,
                        Outcome.TIMED_OUT,
                        message=message,
                        seconds=now - worker.started,
                    )
                )
                self._replace(worker)
        return expired

    def close(self) -> None:
        """Ask idle workers to exit, wait briefly, then end any still running."""
        for worker in self._workers:
            try:
                worker.connection.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
        self.terminate()

    def terminate(self) -> None:
        """End every worker now, abandoning their tasks."""
        for worker in self._workers:
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join()
            worker.connection.close()
        self._workers = []
