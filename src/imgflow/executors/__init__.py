"""Execution models: each runs the same pipeline over a stream of sources."""

from __future__ import annotations

from imgflow.executors.base import Executor, RunControl
from imgflow.executors.parallel import ParallelExecutor
from imgflow.executors.sequential import SequentialExecutor

MODES = ("sequential", "parallel")


def make_executor(
    mode: str, workers: int | None = None, *, time_limit: float | None = None
) -> Executor:
    """Build the executor for a mode name; sequential ignores `workers`."""
    if mode == "sequential":
        return SequentialExecutor()
    if mode == "parallel":
        return ParallelExecutor(workers, time_limit=time_limit)
    raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")


__all__ = [
    "RunControl",
    "MODES",
    "Executor",
    "ParallelExecutor",
    "SequentialExecutor",
    "make_executor",
]
