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
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

from imgflow.pipeline import Pipeline
from imgflow.records import ImageResult, Source


class RunControl:
    """Shared run state: stop requests and the ordering window.

    The first `request_stop()` stops intake and lets in-flight images
    finish; the second abandons them.
    """

    def __init__(self, *, max_ahead: int | None = None) -> None:
        if max_ahead is not None and max_ahead < 1:
            raise ValueError(f"max_ahead must be at least 1, got {max_ahead}")
        self.max_ahead = max_ahead
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._started: collections.deque[Source] = collections.deque()

    def note_started(self, source: Source) -> None:
        """Remember that a source entered the pipeline (thread-safe)."""
        self._started.append(source)

    def take_started(self) -> list[Source]:
        """Return and forget the sources started since the last call."""
        taken = []
        while self._started:
            taken.append(self._started.popleft())
        return taken

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

    def admit(self, wait: float = 0.0) -> Source | None:
        """Return the next source if one may start now, else None.

        With `wait`, block up to that many seconds for the ordering window
        to open before giving up.
        """
        deadline = time.monotonic() + wait
        with self._lock:
            while True:
                if self._control.stopping:
                    return None
                # Peek again after every wait: another thread may have taken it.
                source = self._peek()
                if source is None:
                    return None
                if not self._blocked_by_window(source):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._room.wait(remaining)
            self._next = None
            self._in_flight.add(source.index)
            self._control.note_started(source)
            return source

    def complete(self, source: Source) -> None:
        with self._lock:
            self._in_flight.discard(source.index)
            self._room.notify_all()

    @property
    def drained(self) -> bool:
        """True when no further source will ever be admitted."""
        with self._lock:
            return self._control.stopping or self._peek() is None

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    @property
    def finished(self) -> bool:
        """True when no source is left to admit and none is in flight."""
        with self._lock:
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
