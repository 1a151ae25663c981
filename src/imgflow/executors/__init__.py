"""Execution models: each runs the same pipeline over a stream of sources."""

from __future__ import annotations

from imgflow.executors.base import Executor, RunControl
from imgflow.executors.hybrid import HybridExecutor
from imgflow.executors.parallel import ParallelExecutor, default_workers
from imgflow.executors.pipelined import PipelinedExecutor
from imgflow.executors.sequential import SequentialExecutor

MODES = ("sequential", "parallel", "pipelined", "hybrid")


def pool_workers(mode: str, workers: int | None, images: int) -> int:
    """Count the worker processes a run in `mode` may start.

    Every model but sequential runs one pool of `workers` processes, and
    never more than there are images. In auto mode it is the most the
    chosen model may need.
    """
    if mode == "sequential":
        return 0
    return min(workers or default_workers(), images)


def make_executor(
    mode: str,
    workers: int | None = None,
    *,
    time_limit: float | None = None,
    queue_size: int = 8,
    max_rss: int | None = None,
    small_engine: str = "vips",
) -> Executor:
    """Build the executor for a mode name; sequential ignores the other options."""
    if mode == "sequential":
        return SequentialExecutor()
    if mode == "parallel":
        return ParallelExecutor(workers, time_limit=time_limit, max_rss=max_rss)
    if mode == "pipelined":
        return PipelinedExecutor(
            workers, time_limit=time_limit, queue_size=queue_size, max_rss=max_rss
        )
    if mode == "hybrid":
        return HybridExecutor(
            workers, small_engine=small_engine, time_limit=time_limit, max_rss=max_rss
        )
    raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")


__all__ = [
    "MODES",
    "Executor",
    "HybridExecutor",
    "ParallelExecutor",
    "PipelinedExecutor",
    "RunControl",
    "SequentialExecutor",
    "make_executor",
    "pool_workers",
]
