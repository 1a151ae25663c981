"""The worker pool: results, crashes, time limits, replacement workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    # The completion reports how long the worker ran the task.
    assert done["stuck"].seconds >= 2.0
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


def _reserve_scenario(scenario: str) -> dict:
    """Run one scenario of reserve_script.py in a fresh process."""
    tests = Path(__file__).parent
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(tests), environment.get("PYTHONPATH")])
    )
    completed = subprocess.run(
        [sys.executable, str(tests / "reserve_script.py"), scenario],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert completed.stdout, completed.stderr
    return json.loads(completed.stdout.splitlines()[0])


def _gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie not yet reaped counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="workers are forked only on Linux"
)


@linux_only
def test_pool_takes_reserved_workers() -> None:
    outcome = _reserve_scenario("adopted")
    assert outcome == {"forked": 2, "origins": ["forked"]}


@linux_only
def test_reserve_skipped_with_threads() -> None:
    """A second thread makes forking unsafe, so the pool spawns its workers."""
    outcome = _reserve_scenario("threaded")
    assert outcome == {"forked": 0, "origins": ["imported"]}


@linux_only
def test_unused_reserved_workers_released() -> None:
    outcome = _reserve_scenario("unused")
    assert outcome["forked"] == 2
    assert len(outcome["pids"]) == 2
    assert outcome["alive_after"] == []


@linux_only
def test_forked_worker_signal_handling() -> None:
    """The parent's own SIGTERM handler does not carry over into a worker."""
    outcome = _reserve_scenario("signals")
    assert outcome["origins"] == ["forked"]
    assert outcome["after_sigint"] is True
    assert outcome["after_sigterm"] == -signal.SIGTERM


@linux_only
def test_forked_workers_exit_with_parent() -> None:
    """Neither a taken nor an unused reserved worker outlives a killed parent."""
    outcome = _reserve_scenario("orphaned")
    assert outcome["forked"] == 2
    assert len(outcome["pids"]) == 2
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not all(map(_gone, outcome["pids"])):
        time.sleep(0.1)
    assert all(map(_gone, outcome["pids"]))
