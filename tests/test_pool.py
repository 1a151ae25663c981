"""The worker pool: results, crashes, time limits, replacement workers."""

from __future__ import annotations

import time

import pytest

from imgflow.executors.pool import Outcome, WorkerPool
from pool_tasks import behave


def _drain(pool: WorkerPool, count: int, limit: float = 30.0) -> dict:
    completions = {}
    deadline = time.monotonic() + limit
    while len(completions) < count and time.monotonic() < deadline:
        for completion in pool.poll(0.2):
            completions[completion.task_id] = completion
    return completions


@pytest.fixture
def pool():
    made = WorkerPool(2, behave, task_timeout=2.0)
    assert made.wait_ready()
    yield made
    made.terminate()


def test_results_come_back(pool: WorkerPool) -> None:
    """Tasks on both workers return their values."""
    pool.submit("a", ("ok", 1))
    pool.submit("b", ("ok", 2))
    done = _drain(pool, 2)
    assert done["a"].outcome is Outcome.OK
    assert done["a"].value == "ok:1"
    assert done["b"].value == "ok:2"


def test_crash_costs_only_its_task(pool: WorkerPool) -> None:
    """A worker that exits loses its own task; the other finishes and a new worker starts."""
    pool.submit("crash", ("exit", 3))
    pool.submit("fine", ("sleep", 0.3))
    done = _drain(pool, 2)
    assert done["crash"].outcome is Outcome.LOST
    assert "exited with status 3" in done["crash"].message
    assert done["fine"].outcome is Outcome.OK
    assert pool.size == 2
    assert pool.wait_ready()
    assert pool.idle() == 2
    pool.submit("after", ("ok", 5))
    assert _drain(pool, 1)["after"].value == "ok:5"


def test_time_limit_ends_worker(pool: WorkerPool) -> None:
    """A task past the time limit is reported and its worker replaced."""
    old_pids = set(pool.pids())
    pool.submit("stuck", ("sleep", 60))
    started = time.monotonic()
    done = _drain(pool, 1)
    assert done["stuck"].outcome is Outcome.TIMED_OUT
    assert time.monotonic() - started < 30
    assert set(pool.pids()) != old_pids
    assert pool.wait_ready()
    assert pool.idle() == 2


def test_exception_reported_as_error(pool: WorkerPool) -> None:
    """An exception inside the task comes back with its type and message."""
    pool.submit("bad", ("raise", 7))
    done = _drain(pool, 1)
    assert done["bad"].outcome is Outcome.ERROR
    assert done["bad"].message == "ValueError: asked to raise 7"


def test_submit_without_idle_worker_raises(pool: WorkerPool) -> None:
    """Submitting to a pool with every worker busy is a programming error."""
    pool.submit("a", ("sleep", 1))
    pool.submit("b", ("sleep", 1))
    with pytest.raises(RuntimeError, match="no idle worker"):
        pool.submit("c", ("ok", 0))


def test_worker_over_memory_limit_recycled() -> None:
    """A worker over the memory ceiling is replaced between tasks; no task is lost."""
    pool = WorkerPool(1, behave, max_rss=1)
    try:
        assert pool.wait_ready()
        first_pid = pool.pids()[0]
        pool.submit("a", ("ok", 1))
        assert _drain(pool, 1)["a"].outcome is Outcome.OK
        assert pool.pids()[0] != first_pid
        assert pool.wait_ready()
        pool.submit("b", ("ok", 2))
        done = _drain(pool, 1)
        assert done["b"].outcome is Outcome.OK
        assert done["b"].value == "ok:2"
    finally:
        pool.terminate()


def test_time_limit_excludes_start_up() -> None:
    """A task's clock starts when a ready worker takes it, not at pool start."""
    pool = WorkerPool(1, behave, task_timeout=1.0)
    try:
        assert pool.idle() == 0
        assert pool.wait_ready()
        pool.submit("quick", ("sleep", 0.5))
        assert _drain(pool, 1)["quick"].outcome is Outcome.OK
    finally:
        pool.terminate()
