"""The executor contract shared by every execution model.

An executor takes a pipeline and an iterable of sources and yields one
`ImageResult` per source, in completion order; the runner restores input
order when asked. It pulls sources lazily through a `Feeder`, which keeps
a bounded number in flight, stops pulling when a stop is requested, and,
for ordered runs, never lets a source run further than `max_ahead`
positions past the oldest unfinished one, so the reorder buffer is bounded.
"""

from __future__ import annotations

import collections
import heapq
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from imgflow.errors import RETRYABLE, Status
from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how soon a failure that may pass is tried again.

    The delay before retry n (1-based) is drawn uniformly from
    [0, min(max_delay, base_delay * 2 ** (n - 1))]: exponential backoff with
    full jitter, so workers that failed together do not retry together.
    """

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays must not be negative")

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


class Probes:
    """Live readings of a running executor, for metrics read mid-run.

    Executors register a callable per queue (its current depth) and per
    worker pool (the process ids of its live workers). Readers call them
    from other threads, so each must be cheap and must not block.
    """

    def __init__(self) -> None:
        self.queues: dict[str, Callable[[], int]] = {}
        self.pools: dict[str, Callable[[], list[int]]] = {}
        self.in_flight: Callable[[], int] = lambda: 0

    def queue_depths(self) -> dict[str, int]:
        return {name: depth() for name, depth in list(self.queues.items())}

    def pool_pids(self) -> dict[str, list[int]]:
        return {name: pids() for name, pids in list(self.pools.items())}


class RunControl:
    """Shared run state: stop requests and the ordering window.

    The first `request_stop()` stops intake and lets in-flight images
    finish; the second abandons them.
    """

    def __init__(
        self, *, max_ahead: int | None = None, retry: RetryPolicy | None = None
    ) -> None:
        if max_ahead is not None and max_ahead < 1:
            raise ValueError(f"max_ahead must be at least 1, got {max_ahead}")
        self.max_ahead = max_ahead
        self.retry = retry or RetryPolicy()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._started: collections.deque[Source] = collections.deque()
        self.probes = Probes()
        # Called with each failed attempt that will be retried.
        self.retry_listeners: list[Callable[[ImageResult], None]] = []

    def note_started(self, source: Source) -> None:
        """Remember that a source entered the pipeline (thread-safe)."""
        self._started.append(source)

    def take_started(self) -> list[Source]:
        """Return and forget the sources started since the last call."""
        taken = []
        while self._started:
            taken.append(self._started.popleft())
        return taken

    def note_retry(self, result: ImageResult) -> None:
        for listener in self.retry_listeners:
            listener(result)

    def request_stop(self) -> None:
        if self._stop.is_set():
            self._abandon.set()
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def abandoned(self) -> bool:
        return self._abandon.is_set()


class Feeder:
    """Hands out sources one at a time, within the limits of a `RunControl`.

    It also schedules retries. `complete` takes a result, and when the
    retry policy allows another attempt, it keeps the source back for a
    backoff delay and hands it out again instead of letting the result
    through. A source waiting for a retry stays in flight, so the ordering
    window and the end of the run wait for it.

    Thread-safe: pipelined executors admit from one thread and complete
    from another.
    """

    def __init__(self, sources: Iterable[Source], control: RunControl) -> None:
        self._sources = iter(sources)
        self._control = control
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._next: Source | None = None
        self._exhausted = False
        self._in_flight: set[int] = set()
        self._attempts: dict[int, int] = {}
        self._admitted_at: dict[int, float] = {}
        self._retries: list[tuple[float, int, Source]] = []
        control.probes.in_flight = lambda: len(self._in_flight)
        control.probes.queues["retry"] = lambda: len(self._retries)

    def _peek(self) -> Source | None:
        if self._next is None and not self._exhausted:
            self._next = next(self._sources, None)
            self._exhausted = self._next is None
        return self._next

    def _blocked_by_window(self, source: Source) -> bool:
        limit = self._control.max_ahead
        if limit is None or not self._in_flight:
            return False
        return source.index >= min(self._in_flight) + limit

    def _due_retry(self) -> Source | None:
        if self._retries and self._retries[0][0] <= time.monotonic():
            return heapq.heappop(self._retries)[2]
        return None

    def _take(self) -> tuple[Source | None, float]:
        """Return a source that may start now, or None and how long to wait."""
        retry = self._due_retry()
        if retry is not None:
            return retry, 0.0
        pause = self._retries[0][0] - time.monotonic() if self._retries else math.inf
        source = self._peek()
        if source is None or self._blocked_by_window(source):
            return None, pause
        self._next = None
        self._in_flight.add(source.index)
        return source, 0.0

    def admit(self, wait: float = 0.0) -> Source | None:
        """Return the next source if one may start now, else None.

        With `wait`, block up to that many seconds for the ordering window
        to open or a retry to fall due before giving up.
        """
        deadline = time.monotonic() + wait
        with self._lock:
            while True:
                if self._control.stopping:
                    self._drop_retries()
                    return None
                # Look again after every wait: another thread may have taken it.
                source, pause = self._take()
                if source is not None:
                    self._attempts[source.index] = (
                        self._attempts.get(source.index, 0) + 1
                    )
                    self._admitted_at.setdefault(source.index, time.monotonic())
                    self._control.note_started(source)
                    return source
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._room.wait(min(remaining, max(pause, 0.0)))

    def complete(self, result: ImageResult) -> bool:
        """Finish a source's attempt; return False when it will be retried.

        The result's `attempts` is set to the number of attempts made, and
        a final result's `latency` to the seconds since the source was
        first admitted.
        """
        source = result.source
        with self._lock:
            attempts = self._attempts.get(source.index, 1)
            result.attempts = attempts
            policy = self._control.retry
            retry = (
                not self._control.stopping
                # A rejection fails the same way every time.
                and result.status is Status.FAILED
                and result.reason in RETRYABLE
                and not result.lasting
                and attempts < policy.attempts
            )
            if retry:
                delay = policy.delay(attempts)
                log.warning(
                    "%s failed at %s (%s), attempt %d of %d; retrying in %.1f s",
                    source.path,
                    result.stage,
                    result.message,
                    attempts,
                    policy.attempts,
                    delay,
                )
                heapq.heappush(
                    self._retries, (time.monotonic() + delay, source.index, source)
                )
                self._control.note_retry(result)
            else:
                self._in_flight.discard(source.index)
                self._attempts.pop(source.index, None)
                admitted = self._admitted_at.pop(source.index, None)
                if admitted is not None:
                    result.latency = time.monotonic() - admitted
            self._room.notify_all()
            return not retry

    def withdraw(self, sources: Iterable[Source]) -> None:
        """Take back admitted sources that no worker started.

        After a stop request they count as not processed, like sources
        never admitted.
        """
        with self._lock:
            for source in sources:
                self._in_flight.discard(source.index)
                self._attempts.pop(source.index, None)
                self._admitted_at.pop(source.index, None)
            self._room.notify_all()

    def _drop_retries(self) -> None:
        for _, index, _source in self._retries:
            self._in_flight.discard(index)
        self._retries.clear()

    @property
    def drained(self) -> bool:
        """True when no further source will ever be admitted."""
        with self._lock:
            no_more = self._control.stopping or self._peek() is None
            return no_more and not self._retries

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    @property
    def finished(self) -> bool:
        """True when no source is left to admit and none is in flight."""
        with self._lock:
            if self._control.stopping:
                self._drop_retries()
            no_more = self._control.stopping or (self._peek() is None)
            return no_more and not self._in_flight


class Executor(Protocol):
    name: str
    workers: int

    def run(
        self, pipeline: Pipeline, sources: Iterable[Source], control: RunControl
    ) -> Iterator[ImageResult]:
        """Process every source and yield its result as it completes."""
        ...
