"""Resource use of a process tree: peak memory, memory over time and CPU.

A `TreeSampler` polls the resident memory of a process and all of its
descendants on a background thread. CPU time comes from `os.times()` of
the measuring process, which includes the children it has reaped, so it
counts worker processes too. That holds only if every process of the tree
has ended and been waited for when the sampler stops, as with a closed
pool or a subprocess that was waited for.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

DEFAULT_INTERVAL_SECONDS = 0.1


def cpu_seconds() -> float:
    """Return user plus system CPU time of this process and its reaped children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def tree_resident_bytes(root: psutil.Process) -> int:
    """Return the summed RSS of `root` and its descendants.

    Pages shared between processes count once per process, so the sum
    overstates the physical memory in use, as `ps` and `top` do.
    """
    try:
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue  # The process ended between listing and reading.
    return total


@dataclass(slots=True)
class Usage:
    """Resource use of a process tree over one measured interval."""

    wall_seconds: float
    cpu_seconds: float
    cores: int
    peak_rss_bytes: int
    # (seconds since the start, tree RSS in bytes), one pair per sample.
    rss_series: list[tuple[float, int]] = field(default_factory=list)

    @property
    def cpu_utilisation(self) -> float:
        """CPU time over the time all cores were available, from 0 to 1."""
        capacity = self.wall_seconds * self.cores
        return self.cpu_seconds / capacity if capacity > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "wall_seconds": round(self.wall_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "cores": self.cores,
            "cpu_utilisation": round(self.cpu_utilisation, 3),
            "peak_rss_bytes": self.peak_rss_bytes,
            "rss_series": [[round(t, 2), rss] for t, rss in self.rss_series],
        }


class TreeSampler:
    """Sample the RSS of a process tree until stopped.

    Use as a context manager around the work to measure, then read `usage`.
    The root is this process unless `pid` names another (a subprocess this
    process started, so its CPU time is counted when it is reaped).
    Memory peaks shorter than the sampling interval can be missed.
    """

    def __init__(
        self, pid: int | None = None, *, interval: float = DEFAULT_INTERVAL_SECONDS
    ) -> None:
        self._root = psutil.Process(pid if pid is not None else os.getpid())
        self._interval = interval
        self._series: list[tuple[float, int]] = []
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._cpu_started = 0.0
        self.usage: Usage | None = None

    def start(self) -> None:
        self._started = time.perf_counter()
        self._cpu_started = cpu_seconds()
        self._sample()
        self._thread = threading.Thread(
            target=self._loop, name="imgflow-tree-sampler", daemon=True
        )
        self._thread.start()

    def _sample(self) -> None:
        elapsed = time.perf_counter() - self._started
        self._series.append((elapsed, tree_resident_bytes(self._root)))

    def _loop(self) -> None:
        while not self._done.wait(self._interval):
            self._sample()

    def stop(self) -> Usage:
        """Stop sampling and return the usage since `start`."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        wall = time.perf_counter() - self._started
        self.usage = Usage(
            wall_seconds=wall,
            cpu_seconds=cpu_seconds() - self._cpu_started,
            cores=psutil.cpu_count() or 1,
            peak_rss_bytes=max(rss for _, rss in self._series),
            rss_series=list(self._series),
        )
        return self.usage

    def __enter__(self) -> TreeSampler:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
